"""`fl-app superlink stop` ends the SuperLink that `flwr run` started, and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fl_app.ops import procs
from fl_app.ops.local_superlink import LocalSuperLink, flwr_local_superlinks

FL_APP = str(Path(sys.executable).parent / "fl-app")


def without_venv(env: dict[str, str]) -> dict[str, str]:
    """A shell where the virtual environment is not active (fl-app called by its path)."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    return {k: v for k, v in {**env, "PATH": path}.items() if k != "VIRTUAL_ENV"}


def started_by_flwr(home: Path) -> tuple[dict[str, str], int]:
    """What `flwr run .` does first with the `local` connection: start a background
    SuperLink (here through `flwr ls`, on free ports of a private FLWR_HOME)."""
    env = LocalSuperLink(home).env  # a private FLWR_HOME and free ports; not started
    subprocess.run(
        [str(Path(sys.executable).parent / "flwr"), "ls"], env=env, capture_output=True,
        timeout=120, check=False,
    )  # fmt: skip
    pids = flwr_local_superlinks(env["FLWR_LOCAL_SUPERLINK_HTTP_API_PORT"], home)
    assert len(pids) == 1, pids
    return env, pids[0]


def test_stopping_a_tree_ends_the_sessions_its_processes_started(tmp_path):
    """Flower's SuperLink starts its simulation processes in sessions of their own."""
    spawner = (
        "import subprocess, sys, time; "
        "child = subprocess.Popen(['sleep', '60'], start_new_session=True); "
        "print(child.pid, flush=True); time.sleep(60)"
    )
    root = procs.start_group([sys.executable, "-c", spawner], tmp_path / "log", dict(os.environ))
    deadline = time.monotonic() + 10
    while not (tmp_path / "log").read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.1)
    child = int((tmp_path / "log").read_text())
    outsider = subprocess.Popen(["sleep", "60"], start_new_session=True)  # not below root
    try:
        assert procs.stop_tree(root.pid, timeout=5)
        root.wait(timeout=10)
        assert not procs.alive(child)
        assert outsider.poll() is None
    finally:
        outsider.kill()
        outsider.wait()
        procs.stop_group(child)


@pytest.mark.slow
def test_stop_ends_exactly_the_superlink_flwr_started(tmp_path):
    env, pid = started_by_flwr(tmp_path / "home")
    _, other_pid = started_by_flwr(tmp_path / "other_home")  # another user's
    decoy = LocalSuperLink(tmp_path / "decoy")  # same program, same flags, not flwr's
    decoy.start()
    try:
        stop = subprocess.run(
            [FL_APP, "superlink", "stop"], env=without_venv(env), capture_output=True,
            text=True, timeout=60, check=True,
        )  # fmt: skip
        assert f"Stopped the local SuperLink (PID {pid})" in stop.stdout
        deadline = time.monotonic() + 10
        while procs.alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not procs.alive(pid)
        assert procs.alive(other_pid) and decoy.process.poll() is None
        again = subprocess.run(
            [FL_APP, "superlink", "stop"], env=without_venv(env), capture_output=True,
            text=True, timeout=60, check=True,
        )  # fmt: skip
        assert "No local SuperLink" in again.stdout
    finally:
        decoy.stop()
        for leftover in (pid, other_pid):
            procs.stop_group(leftover)
