"""Launch Flower from Python: a private simulation SuperLink and `flwr run` against it.

Used by the tests and the benchmarks. The SuperLink gets its own FLWR_HOME and free
loopback ports, and is stopped by PID (its own process group), never by name.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent  # the Flower app directory


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class RunResult:
    run_id: int
    status: str  # e.g. finished:completed, finished:failed
    output: str  # what `flwr run --stream` printed
    seconds: float  # submission to final status


class FlowerCLI:
    """`flwr run` and `flwr ls` for one FLWR_HOME and (optionally) a named connection."""

    def __init__(self, env: dict[str, str], connection: str | None = None) -> None:
        self.env = env
        self.connection = connection

    def flwr(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "flwr"), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _target(self) -> list[str]:
        return [self.connection] if self.connection else []

    def submit(
        self,
        run_config: str,
        *,
        federation_config: str | None = None,
        timeout: float = 900,
        on_line: Callable[[str], None] | None = None,
    ) -> RunResult:
        """`flwr run . --stream`, feeding each log line to `on_line`, then the final status."""
        started = time.monotonic()
        command = [str(BIN / "flwr"), "run", ".", *self._target(), "--stream"]
        if federation_config:
            command += ["--federation-config", federation_config]
        command += ["--run-config", run_config]
        lines: list[str] = []
        with subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        ) as process:  # fmt: skip
            for line in process.stdout or ():
                lines.append(line)
                if on_line is not None:
                    on_line(line)
                if time.monotonic() - started > timeout:
                    process.kill()
                    raise TimeoutError(f"flwr run did not finish within {timeout:.0f}s")
        output = "".join(lines)
        match = re.search(r"run (\d+)", output, re.IGNORECASE)
        if match is None:
            raise RuntimeError(f"flwr run did not start a run:\n{output[-3000:]}")
        run_id = int(match.group(1))
        while not (status := self.run_status(run_id)).startswith("finished"):
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"run {run_id} is still {status} after {timeout:.0f}s")
            time.sleep(2)
        return RunResult(run_id, status, output, time.monotonic() - started)

    def run_status(self, run_id: int) -> str:
        """The status of a run as the SuperLink reports it."""
        listing = self.flwr("ls", *self._target(), "--format", "json", timeout=60)
        data = json.loads(listing.stdout)
        for run in data.get("runs", []):
            if int(run["run-id"]) == run_id:
                return run["status"]
        raise KeyError(f"run {run_id} not in {data}")


class LocalSuperLink:
    """The same SuperLink `flwr run .` would start, but owned (and stopped) by the test."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.http_port = free_port()
        self.control_port = free_port()
        self.log_file = home / "superlink.log"
        self.env = {
            **os.environ,
            "FLWR_HOME": str(home),
            "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(self.http_port),
            "FLWR_LOCAL_CONTROL_API_PORT": str(self.control_port),
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> None:
        command = [
            str(BIN / "flower-superlink"),
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
        log = self.log_file.open("w")
        # A session of its own, so stop() can end the SuperLink and the simulation
        # processes it spawned, and nothing else.
        self.process = subprocess.Popen(
            command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"SuperLink exited: {self.log_file.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.http_port}/health", timeout=0.5).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError("SuperLink did not become healthy in time")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        pgid = self.process.pid  # start_new_session: the group id is our child's PID
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.process.wait(timeout=10)

    @property
    def cli(self) -> FlowerCLI:
        """The `flwr` CLI pointed at this SuperLink (its default `local` connection)."""
        return FlowerCLI(self.env)

    def flwr(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return self.cli.flwr(*args, timeout=timeout)

    def submit(self, run_config: str, federation_config: str, timeout: float = 900) -> RunResult:
        return self.cli.submit(run_config, federation_config=federation_config, timeout=timeout)

    def run_status(self, run_id: int) -> str:
        return self.cli.run_status(run_id)

    def __enter__(self) -> LocalSuperLink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
