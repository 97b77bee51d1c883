"""Simulation SuperLinks: a private one owned by the caller, and the one `flwr run .` left.

`LocalSuperLink` is used by the tests, the sweeps and the benchmarks. It gets its own
FLWR_HOME and free loopback ports, and is stopped by PID (its own process group), never
by name. `stop_flwr_local_superlink` ends the SuperLink that `flwr run` started in the
background for the `local` connection (`fl-app superlink stop`).
"""

from __future__ import annotations

import itertools
import os
import subprocess
from pathlib import Path

from flwr.supercore.utils import get_flwr_home

from fl_app.ops import procs
from fl_app.ops.flower import (
    FlowerCLI,
    RunResult,
    flower_bin,
    free_port,
    path_with_flower,
    wait_healthy,
)


class LocalSuperLink:
    """A simulation SuperLink on 127.0.0.1 with its own FLWR_HOME (a context manager)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.http_port = free_port()
        self.control_port = free_port()
        self.log_file = home / "superlink.log"
        self.env = path_with_flower(
            {
                **os.environ,
                "FLWR_HOME": str(home),
                "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(self.http_port),
                "FLWR_LOCAL_CONTROL_API_PORT": str(self.control_port),
                "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
                "FLWR_DISABLE_UPDATE_CHECK": "1",
            }
        )
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> None:
        command = [
            flower_bin("flower-superlink"),
            "--insecure",
            "--simulation",
            "--isolation",
            "subprocess",
            "--control-api-address",
            f"127.0.0.1:{self.control_port}",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.http_port),
            "--database",
            str(self.home / "state.db"),
        ]
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_file.write_text("")
        # A session of its own, so stop() ends the SuperLink and the simulation
        # processes it spawned, and nothing else.
        self.process = procs.start_group(command, self.log_file, self.env)
        process = self.process
        try:
            wait_healthy(
                f"http://127.0.0.1:{self.http_port}/health",
                alive=lambda: process.poll() is None,
                timeout=timeout,
            )
        except RuntimeError as err:
            raise RuntimeError(f"{err}: {self.log_file.read_text()[-2000:]}") from err

    def stop(self) -> None:
        """End the SuperLink's process group (also what outlived the SuperLink itself)."""
        if self.process is None:
            return
        procs.stop_group(self.process.pid)  # start_group: the group id is our child's PID
        self.process.wait(timeout=10)

    @property
    def cli(self) -> FlowerCLI:
        """The `flwr` CLI pointed at this SuperLink (its default `local` connection)."""
        return FlowerCLI(self.env)

    def flwr(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return self.cli.flwr(*args, timeout=timeout)

    def submit(
        self,
        run_config: str,
        federation_config: str,
        timeout: float = 900,
        app_dir: Path | None = None,
    ) -> RunResult:
        """`flwr run` of fl_app's app, or of the app in `app_dir`, on this SuperLink."""
        cli = self.cli if app_dir is None else FlowerCLI(self.env, app_dir=app_dir)
        return cli.submit(run_config, federation_config=federation_config, timeout=timeout)

    def run_status(self, run_id: int) -> str:
        return self.cli.run_status(run_id)

    def __enter__(self) -> LocalSuperLink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def flwr_local_superlinks(port: str, flwr_home: Path) -> list[int]:
    """PIDs of the simulation SuperLinks `flwr run` started for `flwr_home` on `port`.

    `flwr run` records no PID; what it starts is recognised by its command line: the
    `flower-superlink` program, `--simulation`, `--port <port>` and its log file in
    `<flwr_home>/local-superlink/`. Nothing else matches (not our `LocalSuperLink`s).
    """
    log_file = str(flwr_home / "local-superlink" / "superlink.log")
    found = []
    for proc in procs.snapshot().values():
        argv = proc.argv
        options = dict(itertools.pairwise(argv))
        if (
            proc.live
            and any(Path(arg).name == "flower-superlink" for arg in argv[:2])
            and "--simulation" in argv
            and options.get("--port") == port
            and options.get("--log-file") == log_file
        ):
            found.append(proc.pid)
    return found


def stop_flwr_local_superlink() -> list[int]:
    """Stop the SuperLink `flwr run` left running for this shell's FLWR_HOME and port,
    and the processes it started (simulations, Ray); the PIDs of the SuperLinks."""
    port = os.environ.get("FLWR_LOCAL_SUPERLINK_HTTP_API_PORT", "39091")
    pids = flwr_local_superlinks(port, get_flwr_home())
    for pid in pids:
        procs.stop_tree(pid)  # `flwr run` starts it in a session of its own: pgid == pid
    return pids
