"""The warm SuperExec's one patch of Flower still has a target (written against flwr 1.42)."""

from __future__ import annotations

from importlib.metadata import version

from flwr.supercore.superexec import run_superexec as superexec_module
from flwr.supercore.superexec.executor import Executor

from fl_app.ops.warm_exec import ForkExecutor


def test_flowers_executor_lookup_is_still_where_the_patch_replaces_it():
    # warm_exec.run replaces the module-level `get_executor` that `run_superexec` calls.
    # If a Flower release moves or renames that lookup, the patch silently does nothing
    # and every task would run cold: fail here instead.
    assert version("flwr").startswith("1.42."), "re-check fl_app/ops/warm_exec.py's patch"
    assert callable(superexec_module.get_executor)
    assert "get_executor" in superexec_module.run_superexec.__code__.co_names


def test_the_fork_executor_offers_everything_of_flowers_executor_interface():
    wanted = [name for name in dir(Executor) if not name.startswith("_")]
    assert {"launch", "reconcile"} <= set(wanted)
    executor = ForkExecutor()
    missing = [name for name in wanted if not callable(getattr(executor, name, None))]
    assert missing == []


def test_the_task_poll_setting_is_the_one_flower_reads(monkeypatch):
    from fl_app.ops import warm_exec

    monkeypatch.setenv(warm_exec.TASK_POLL_ENV, warm_exec.TASK_POLL_SECONDS)
    assert superexec_module._get_task_poll_interval() == float(warm_exec.TASK_POLL_SECONDS)
