"""Writing secrets: key files are mode 0600 from the moment they exist."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, data: bytes) -> None:
    """Create (or truncate) `path` with mode 0600, then write `data`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when the file already existed with wider rights
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
