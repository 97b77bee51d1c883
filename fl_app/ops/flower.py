"""Flower's command-line tools as operators use them: where they are, `flwr` itself,
and a SuperLink's health endpoint. Shared by the local federation, the private
simulation SuperLink, sweeps, tests and benchmarks."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent  # Flower's executables sit beside this Python


def _source_app() -> Path | None:
    """The repository's own Flower app when fl_app runs from a source checkout (its
    pyproject.toml names fl_app's apps); None when fl_app is an installed package."""
    root = Path(__file__).resolve().parents[2]
    project = root / "pyproject.toml"
    return root if project.is_file() and "fl_app.server_app:app" in project.read_text() else None


APP_DIR = _source_app()  # the repository's app: one app on the package, not the package
NO_APP = (
    "no Flower app in {where}: run this in an app's directory (one `fl-app new DIR` made, "
    "with a pyproject.toml and a conf/) or pass --app DIR"
)


def flower_bin(name: str) -> str:
    """The path of one of Flower's executables (`flwr`, `flower-superlink`, ...)."""
    return str(BIN / name)


def path_with_flower(env: dict[str, str]) -> dict[str, str]:
    """`env` with Flower's executables first on PATH (Flower starts helpers by name)."""
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"}


def flwr_home() -> Path:
    """The FLWR_HOME in effect (Flower's default is ~/.flwr)."""
    return Path(os.environ.get("FLWR_HOME", Path.home() / ".flwr")).expanduser()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(
    url: str,
    *,
    alive: Callable[[], bool],
    verify: str | bool = True,
    timeout: float = 60.0,
) -> None:
    """Poll a SuperLink's `/health` until it answers; fail fast if the process `alive`
    says it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the SuperLink exited during start-up (health URL {url})")
        try:
            if httpx.get(url, verify=verify, timeout=1).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the SuperLink did not answer on {url} within {timeout:.0f}s")


@dataclass(frozen=True)
class RunResult:
    run_id: int
    status: str  # e.g. finished:completed, finished:failed
    output: str  # what `flwr run --stream` printed
    seconds: float  # submission to final status


class FlowerCLI:
    """`flwr` for one FLWR_HOME, (optionally) a named connection, and one app directory
    (fl_app's own by default; a user's app made by `fl-app new`)."""

    def __init__(
        self, env: dict[str, str], connection: str | None = None, app_dir: Path | None = None
    ) -> None:
        self.env = env
        self.connection = connection
        if app_dir is None and APP_DIR is None:
            raise ValueError(NO_APP.format(where="this installation (no source checkout)"))
        self.app_dir = app_dir or APP_DIR

    def flwr(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """Any `flwr` command, run in the app directory; its output captured."""
        return subprocess.run(
            [flower_bin("flwr"), *args],
            cwd=self.app_dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def target(self) -> list[str]:
        """The connection argument of `flwr` commands (none: Flower's default)."""
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
        command = [flower_bin("flwr"), "run", ".", *self.target(), "--stream"]
        if federation_config:
            command += ["--federation-config", federation_config]
        command += ["--run-config", run_config]
        lines: list[str] = []
        with subprocess.Popen(
            command, cwd=self.app_dir, env=self.env, stdout=subprocess.PIPE,
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
        listing = self.flwr("ls", *self.target(), "--format", "json", timeout=60)
        data = json.loads(listing.stdout)
        for run in data.get("runs", []):
            if int(run["run-id"]) == run_id:
                return run["status"]
        raise KeyError(f"run {run_id} not in {data}")
