"""A snapshot of this machine's processes, read from /proc (Linux).

Used to start and stop exactly what we started (process groups, descendants of a PID)
and to measure the memory of a process tree; never to match processes broadly by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    state: str  # "R", "S", ... "Z" for a zombie
    argv: tuple[str, ...]

    @property
    def live(self) -> bool:
        return self.state != "Z"


def _read(entry: Path) -> Proc | None:
    try:
        fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
    except (OSError, IndexError, ValueError):
        return None  # the process ended while we looked
    return Proc(
        pid=int(entry.name),
        ppid=int(fields[1]),
        pgid=int(fields[2]),
        state=fields[0],
        argv=tuple(arg for arg in argv if arg),
    )


def snapshot() -> dict[int, Proc]:
    """Every process visible now, by PID."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (proc := _read(entry)) is not None:
            table[proc.pid] = proc
    return table


def alive(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    proc = _read(Path("/proc") / str(pid))
    return proc is not None and proc.live


def descendants(root: int, table: dict[int, Proc] | None = None) -> list[Proc]:
    """Live processes below `root` in the process tree (not `root` itself)."""
    table = snapshot() if table is None else table
    children: dict[int, list[Proc]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child.live:
                found.append(child)
            todo.append(child.pid)
    return found


def pids_below(root: int, program: str) -> list[int]:
    """PIDs of live processes below `root` whose command line mentions `program`."""
    return [proc.pid for proc in descendants(root) if any(program in arg for arg in proc.argv)]


def pss_bytes(pid: int) -> int:
    """Proportional set size of `pid` (shared pages split among their users), or 0."""
    try:
        for line in (Path("/proc") / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_pss(root: int) -> int:
    """Memory of `root` and its live descendants together, shared pages counted once."""
    return pss_bytes(root) + sum(pss_bytes(proc.pid) for proc in descendants(root))


# ---------------------------------------------------------------- process groups
def start_group(command: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start `command` as the leader of a new process group (its PID is the group id),
    output appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def group_alive(pgid: int) -> bool:
    """Whether process group `pgid` has a live (non-zombie) member."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return alive(pgid) or any(p.pgid == pgid and p.live for p in snapshot().values())


def stop_group(pgid: int, timeout: float = 20.0) -> bool:
    """SIGTERM process group `pgid`, SIGKILL it after `timeout`; whether it was running."""
    if not group_alive(pgid):
        return False
    _signal_group(pgid, signal.SIGTERM)
    if not _gone_within(pgid, timeout):
        _signal_group(pgid, signal.SIGKILL)
        _gone_within(pgid, 5.0)
    return True


def stop_tree(root: int, timeout: float = 20.0) -> bool:
    """Stop group `root` and the groups that processes below it lead (sessions of their
    own, as Flower's simulation processes start); whether `root` was running."""
    below = descendants(root)
    own_groups = {proc.pgid for proc in below} & {proc.pid for proc in below}
    running = stop_group(root, timeout)
    for pgid in sorted(own_groups):
        stop_group(pgid, timeout)
    return running


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended on its own meanwhile
        os.killpg(pgid, sig)


def _gone_within(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True
