"""SEAL objects to and from bytes without putting them on disk.

SEAL's Python API (`tenseal.sealapi`) saves and loads through file paths only. On
Linux an anonymous memory file (memfd) gives it a path whose contents live in RAM and
are gone when it is closed; elsewhere a private temporary directory (mode 0700) holds
the file and is removed at once. Ciphertexts and keys pass through here.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fl_app.crypto.secret_files import write_private

_HAS_MEMFD = hasattr(os, "memfd_create") and Path("/proc/self/fd").is_dir()


def save_bytes(save: Callable[[str], None]) -> bytes:
    """What `save(path)` writes, as bytes."""
    with _scratch() as (path, read, _):
        save(path)
        return read()


def load_bytes(data: bytes, load: Callable[[str], None]) -> None:
    """Let `load(path)` read `data`."""
    with _scratch() as (path, _, write):
        write(data)
        load(path)


@contextmanager
def _scratch() -> Iterator[tuple[str, Callable[[], bytes], Callable[[bytes], None]]]:
    if _HAS_MEMFD:
        fd = os.memfd_create("fl_app", os.MFD_CLOEXEC)
        try:
            yield f"/proc/self/fd/{fd}", lambda: _read_all(fd), lambda data: _write_all(fd, data)
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="fl_app-") as tmp:  # created 0700
        path = Path(tmp) / "blob"
        yield str(path), path.read_bytes, lambda data: write_private(path, data)


def _read_all(fd: int) -> bytes:
    return os.pread(fd, os.fstat(fd).st_size, 0)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
