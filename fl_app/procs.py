"""A snapshot of this machine's processes, read from /proc (Linux).

Used to stop exactly what we started (process groups, descendants of a PID) and to
measure the memory of a process tree; never to match processes broadly by name.
"""

from __future__ import annotations

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
