"""fl_app's SuperNode: Flower's main with a short idle wait (written against flwr 1.42)."""

from __future__ import annotations

import ast
import importlib
import inspect
import itertools
import json
import os
import sys
import time
from contextlib import contextmanager
from importlib.metadata import entry_points, version

import pytest
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.supernode import start_client_internal as loop_module
from flwr.supernode.nodestate import NodeStateFactory

from fl_app.cli import build_parser
from fl_app.ops import local_deployment as deploy
from fl_app.ops import procs, supernode
from fl_app.ops.flower import FlowerCLI, flower_bin


def _is_time_sleep(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "sleep"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "time"
    )


def test_flower_supernode_runs_the_main_that_fl_app_runs():
    (script,) = entry_points(group="console_scripts", name="flower-supernode")
    assert script.value == "flwr.supernode.cli:flower_supernode"
    assert script.load() is supernode.flower_supernode
    # the main calls the loop of the module whose `time` the patch replaces (the package
    # `flwr.supernode.cli` exports the function under its module's name)
    cli_module = importlib.import_module("flwr.supernode.cli.flower_supernode")
    assert cli_module.start_client_internal is loop_module.start_client_internal
    assert "start_client_internal" in cli_module.flower_supernode.__code__.co_names


def test_the_pull_loop_still_has_the_one_idle_sleep_the_patch_shortens():
    # If a Flower release changes any of this, the proxy shortens nothing, or the wrong
    # wait: fail here and re-check fl_app/ops/supernode.py.
    assert version("flwr").startswith("1.42."), "re-check fl_app/ops/supernode.py's patch"
    tree = ast.parse(inspect.getsource(loop_module))
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    time_imports = [
        n for n in imports
        if any(alias.name == "time" or alias.asname == "time" for alias in n.names)
        or (isinstance(n, ast.ImportFrom) and n.module == "time")
    ]  # fmt: skip
    assert [ast.unparse(n) for n in time_imports] == ["import time"]
    assert time_imports[0] in tree.body  # at module level: the loop reads the global
    # `time` is never rebound, and only ever used as `time.<attribute>`
    uses = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "time"]
    attribute_owners = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert uses and all(isinstance(n.ctx, ast.Load) and id(n) in attribute_owners for n in uses)
    sleeps = [n for n in ast.walk(tree) if _is_time_sleep(n)]
    arguments = [ast.unparse(n.args[0]) for n in sleeps]
    # every sleep has a literal argument, and exactly one is Flower's 3 s
    assert all(isinstance(n.args[0], ast.Constant) for n in sleeps), arguments
    assert arguments.count(str(supernode.FLOWER_IDLE_SECONDS)) == 1, arguments
    # ... and it is the idle wait: in start_client_internal's `while True`, when the
    # pull returned no run
    (main,) = [n for n in tree.body if getattr(n, "name", "") == "start_client_internal"]
    (idle,) = [
        n for n in ast.walk(main)
        if isinstance(n, ast.If) and ast.unparse(n.test) == "run_id is None"
    ]  # fmt: skip
    assert [ast.unparse(n) for n in idle.body] == ["time.sleep(3)", "continue"]
    loops = [n for n in ast.walk(main) if isinstance(n, ast.While)]
    assert any(idle in ast.walk(loop) and ast.unparse(loop.test) == "True" for loop in loops)


def test_the_proxy_shortens_only_flowers_idle_sleep():
    proxy = supernode.ShortIdleTime(0.01)
    started = time.monotonic()
    proxy.sleep(3)
    assert time.monotonic() - started < 1
    long_proxy = supernode.ShortIdleTime(5.0)
    started = time.monotonic()
    long_proxy.sleep(0.05)  # another wait (Flower's 0.5 s reply polls): as asked
    assert 0.05 <= time.monotonic() - started < 1
    assert proxy.monotonic is time.monotonic and proxy.time is time.time


@contextmanager
def _idle_connection(pulls: list[float], wanted: int):
    """A Fleet connection whose pulls find nothing; the loop ends after `wanted` pulls."""

    def receive() -> None:
        pulls.append(time.monotonic())
        if len(pulls) >= wanted:
            raise _EnoughPulls

    def unused(*_: object) -> None:
        raise AssertionError("an idle node sends and fetches nothing")

    yield 7, receive, unused, unused, unused, unused, unused, unused


class _EnoughPulls(Exception):
    pass


def _run_idle_loop(monkeypatch, wanted: int) -> list[float]:
    """Flower's real loop against an idle connection; the gaps between its pulls."""
    pulls: list[float] = []
    monkeypatch.setattr(loop_module, "_init_connection", lambda *_, **__: _idle_connection(
        pulls, wanted
    ))  # fmt: skip
    monkeypatch.setattr(loop_module, "register_signal_handlers", lambda **_: None)
    with pytest.raises(_EnoughPulls):
        loop_module.start_client_internal(
            state_factory=NodeStateFactory(objectstore_factory=ObjectStoreFactory()),
            server_address="127.0.0.1:9092",
            node_config={},
            insecure=True,
            isolation="process",  # no SuperExec process is started
        )
    return [later - earlier for earlier, later in itertools.pairwise(pulls)]


def test_the_patched_loop_pulls_again_after_the_short_wait(monkeypatch):
    monkeypatch.setattr(loop_module, "time", loop_module.time)  # restored afterwards
    supernode.shorten_idle_wait(0.2)
    gaps = _run_idle_loop(monkeypatch, wanted=4)
    assert len(gaps) == 3
    assert all(0.2 <= gap < 1.0 for gap in gaps), gaps  # Flower's own: 3 s


def test_the_unpatched_loop_waits_flowers_3_seconds(monkeypatch):
    # the control: the same loop, as Flower ships it
    monkeypatch.setattr(loop_module, "time", time)
    (gap,) = _run_idle_loop(monkeypatch, wanted=2)
    assert gap >= supernode.FLOWER_IDLE_SECONDS


@pytest.mark.parametrize(
    ("raw", "seconds"), [(None, supernode.IDLE_DEFAULT), ("", supernode.IDLE_DEFAULT),
                         ("0.5", 0.5), (" 3 ", 3.0), ("60", 60.0)],
)  # fmt: skip
def test_the_idle_wait_comes_from_the_environment(raw, seconds):
    env = {} if raw is None else {supernode.IDLE_ENV: raw}
    assert supernode.idle_seconds(env) == seconds


@pytest.mark.parametrize("raw", ["0", "-1", "60.5", "nan", "inf", "0.25s", "three"])
def test_a_bad_idle_wait_is_refused_by_name(raw):
    with pytest.raises(ValueError, match=rf"{supernode.IDLE_ENV}='{raw}' is invalid"):
        supernode.idle_seconds({supernode.IDLE_ENV: raw})


def test_fl_app_supernode_hands_every_argument_to_flowers_main(monkeypatch):
    argv = ["--superlink", "127.0.0.1:9092", "--node-config", 'a="b --help"', "-V"]
    args = build_parser().parse_args(["--log-level", "debug", "supernode", *argv])
    assert args.flower_args == argv and args.log_level == "debug"
    seen = {}

    def flower_main() -> None:
        seen["argv"], seen["time"] = list(sys.argv), loop_module.time

    monkeypatch.setattr(loop_module, "time", loop_module.time)
    monkeypatch.setattr(sys, "argv", sys.argv)
    monkeypatch.setattr(supernode, "flower_supernode", flower_main)
    monkeypatch.setenv(supernode.IDLE_ENV, "0.4")
    args.handler(args)
    assert seen["argv"] == ["flower-supernode", *argv]
    assert isinstance(seen["time"], supernode.ShortIdleTime)
    assert seen["time"].idle_seconds == 0.4


@pytest.mark.parametrize("argv", [["--help"], ["--superlink", "127.0.0.1:9092", "-h"]])
def test_fl_app_supernode_help_says_what_it_changes(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["supernode", *argv])
    shown = capsys.readouterr().out
    assert exit_.value.code == 0 and "fl-app supernode" in shown
    assert supernode.IDLE_ENV in shown and "flower-supernode --help" in shown


@pytest.mark.slow
@pytest.mark.parametrize("warm", [True, False], ids=["warm", "cold"])
def test_a_local_federation_of_fl_app_supernodes_comes_online_and_stops(
    tmp_path, monkeypatch, warm
):
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr_home"))
    root = tmp_path / "fed"
    info = None
    try:
        info = deploy.up(root, num_nodes=2, task="breast_cancer", warm=warm)
        node_pids = [info["pids"][f"supernode{index}"] for index in range(2)]
        for pid in node_pids:  # `python .../fl-app supernode ...`: the script's shebang
            argv = procs.snapshot()[pid].argv
            assert argv[argv.index(flower_bin("fl-app")) + 1] == "supernode", argv
        cli = FlowerCLI(dict(os.environ), deploy.CONNECTION)
        deadline, online = time.monotonic() + 90, 0
        while online < 2 and time.monotonic() < deadline:
            listing = cli.flwr("supernode", "ls", deploy.CONNECTION, "--format", "json")
            online = sum(n["status"] == "online" for n in json.loads(listing.stdout)["nodes"])
            time.sleep(1)
        assert online == 2
        log = (root / "logs" / "supernode0.log").read_text()
        assert f"Idle wait between pulls: {supernode.IDLE_DEFAULT:.2f} s" in log
    finally:
        stopped = deploy.down(root)
    assert info is not None
    assert sorted(stopped) == sorted(info["pids"])
    for name, pid in info["pids"].items():
        assert not procs.group_alive(pid), f"{name} (PID {pid}) survived down"
