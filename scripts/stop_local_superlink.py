#!/usr/bin/env python3
"""Stop the background simulation SuperLink that `flwr run .` started, by its PID.

`flwr run .` with the default `local` connection starts `flower-superlink --simulation`
detached and leaves it running for later runs. This finds exactly that process (the one
serving the local SuperLink port, 39091 unless FLWR_LOCAL_SUPERLINK_HTTP_API_PORT says
otherwise) and sends it SIGTERM. Nothing else is touched.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
from pathlib import Path

from fl_app.ops.procs import snapshot


def local_superlink_pids(port: str) -> list[int]:
    """PIDs whose command line is a simulation SuperLink serving `port`."""
    pids = []
    for proc in snapshot().values():
        argv = proc.argv
        is_superlink = any(Path(arg).name == "flower-superlink" for arg in argv[:2])
        serves_port = any(a == "--port" and b == port for a, b in itertools.pairwise(argv))
        if proc.live and is_superlink and serves_port and "--simulation" in argv:
            pids.append(proc.pid)
    return pids


def main() -> int:
    port = os.environ.get("FLWR_LOCAL_SUPERLINK_HTTP_API_PORT", "39091")
    pids = local_superlink_pids(port)
    if not pids:
        print(f"No local SuperLink is serving port {port}.")
        return 0
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
        print(f"Stopped local SuperLink (PID {pid}, port {port}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
