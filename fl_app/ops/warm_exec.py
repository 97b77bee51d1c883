"""A warm SuperExec for SuperNodes in `--isolation process` mode.

Flower 1.42 starts a fresh `flwr-clientapp` process for every message a SuperNode
receives, and each one imports TensorFlow again: seconds of fixed cost per node and
round. This process imports the heavy libraries once, then runs Flower's own SuperExec
loop with an executor that *forks* a child per ClientApp task; the child calls Flower's
`run_clientapp` for its token and exits. Nothing of the app is imported here, so the
child still loads the ClientApp from the run's FAB, and no TensorFlow op ever runs in
the parent, so each child starts with a clean TensorFlow runtime.

Run one per SuperNode:
    flower-supernode ... --isolation process --port 9094
    fl-app warm-superexec --runtime-api-address 127.0.0.1:9094 --insecure
"""

from __future__ import annotations

import os
import traceback
from typing import Any

from flwr.supercore.constant import ExecutorType, TaskType
from flwr.supercore.superexec import run_superexec as superexec_module
from flwr.supercore.superexec.executor import ExecutionSpec, LaunchResult
from flwr.supercore.tls import validate_and_resolve_root_certificates
from flwr.supernode.runtime.run_clientapp import run_clientapp

from fl_app import quiet

# Flower's SuperExec asks its SuperNode for new ClientApp tasks every second by default;
# this environment variable is Flower's own setting for that. Forking is cheap, so ask
# every 0.1 s unless the operator sets it.
TASK_POLL_ENV, TASK_POLL_SECONDS = "FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.1"

# TenSEAL before TensorFlow: in this order the two libraries coexist (the reverse
# order is what fl_app.crypto._tenseal guards against with RTLD_DEEPBIND).
WARM_MODULES = ("tenseal", "tensorflow", "keras", "sklearn", "datasets", "hydra", "omegaconf")


def warm_up() -> list[str]:
    """Import the libraries every ClientApp task needs (quietly, as `fl-app --log-level`
    says); run nothing."""
    quiet.import_quietly(*WARM_MODULES)
    return list(WARM_MODULES)


class ForkExecutor:
    """Runs each ClientApp task in a child forked from this warm process."""

    def __init__(self) -> None:
        self.children: set[int] = set()

    def get_eligible_capacity(
        self, supported_task_types: set[TaskType], **_: Any
    ) -> tuple[set[TaskType], set[str]]:
        return supported_task_types & {TaskType.CLIENT_APP}, set()

    def wait_for_capacity(self, *_: Any, **__: Any) -> None:
        """Forking has no capacity gate."""

    def launch(self, spec: ExecutionSpec) -> LaunchResult:
        if spec.task_type != TaskType.CLIENT_APP:
            return LaunchResult.failed(f"task type {spec.task_type} is not a ClientApp")
        pid = os.fork()
        if pid == 0:  # the child: one task, then exit without returning to the loop
            code = 0
            try:
                run_clientapp(
                    runtime_api_address=spec.runtime_api_address,
                    token=spec.token,
                    insecure=spec.insecure,
                    certificates=validate_and_resolve_root_certificates(
                        spec.root_certificates_path, spec.insecure
                    ),
                    parent_pid=spec.parent_pid,
                    runtime_dependency_install=spec.runtime_dependency_install,
                )
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
            except BaseException:  # the child must never return into the parent's loop
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        self.children.add(pid)
        return LaunchResult.accepted()

    def reconcile(self) -> None:
        """Reap finished children."""
        for pid in list(self.children):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                self.children.discard(pid)

    def close(self) -> None:
        self.reconcile()


def run(
    runtime_api_address: str,
    *,
    insecure: bool,
    root_certificates: str | None = None,
    parent_pid: int | None = None,
) -> None:
    """Warm up, then serve ClientApp tasks with Flower's SuperExec loop until stopped."""
    warm_up()
    os.environ.setdefault(TASK_POLL_ENV, TASK_POLL_SECONDS)
    executor = ForkExecutor()
    # Written against flwr 1.42: `run_superexec` looks its executor up through the
    # module-level `get_executor(executor_type)`; replacing that name hands it ours and
    # leaves the loop itself unchanged. tests/ops/test_warm_exec.py fails loudly if a
    # Flower release moves or renames the lookup.
    superexec_module.get_executor = lambda *_, **__: executor
    superexec_module.run_superexec(
        runtime_api_address=runtime_api_address,
        insecure=insecure,
        root_certificates_path=root_certificates,
        parent_pid=parent_pid,
        executor_type=ExecutorType.SUBPROCESS,
    )
