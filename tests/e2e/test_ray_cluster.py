"""Issue 13: the simulation on an existing Ray cluster (slow). A Ray head started here on
127.0.0.1, in its own process group, stopped by that group's PID (never `ray stop`,
which would end every Ray process on the machine)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from fl_app.ops import procs
from fl_app.ops.flower import free_port
from fl_app.ops.local_superlink import LocalSuperLink

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).parent / "ray")


@pytest.fixture
def ray_head():
    """`ray start --head --block` as a child process group; yields its address."""
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths are short
    port = free_port()
    command = [
        RAY, "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
        "--num-cpus=2", "--object-store-memory=200000000", "--include-dashboard=false",
        "--disable-usage-stats", f"--temp-dir={temp}",
    ]  # fmt: skip
    head = procs.start_group(command, temp / "head.log", dict(os.environ))
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            status = subprocess.run(
                [RAY, "status", f"--address={address}"], capture_output=True, text=True,
                check=False, timeout=60,
            )  # fmt: skip
            if status.returncode == 0:
                break
            assert head.poll() is None, (temp / "head.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (temp / "head.log").read_text()[-3000:]
            time.sleep(2)
        yield address, temp
    finally:
        family = [p.pid for p in procs.descendants(head.pid)]
        procs.stop_group(head.pid, timeout=30)
        for pid in family:  # anything Ray started in a session of its own, by PID
            if procs.alive(pid):
                os.kill(pid, 9)
        shutil.rmtree(temp, ignore_errors=True)


def test_the_simulation_runs_on_an_existing_ray_cluster(ray_head, tmp_path, monkeypatch):
    address, temp = ray_head
    monkeypatch.setenv("RAY_ADDRESS", address)  # what the README tells users to export
    out = tmp_path / "run"
    with LocalSuperLink(tmp_path / "flwr_home") as link:
        result = link.submit(
            f"privacy='he' num-server-rounds=1 output-dir='{out}' "
            "overrides='task=breast_cancer federation.num_supernodes=2'",
            "num-supernodes=2 client-resources-num-cpus=1",
        )
    assert result.status == "finished:completed", result.output[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds_completed"] == 1 and summary["final_accuracy"] > 0.5
    # The ClientApps ran as actors of *our* head: its session logs the driver and workers.
    logs = list((temp / "session_latest" / "logs").glob("*"))
    assert any("driver" in p.name for p in logs), sorted(p.name for p in logs)[:20]
    assert any(p.name.startswith("worker-") for p in logs), sorted(p.name for p in logs)[:20]
