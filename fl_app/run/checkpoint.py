"""Atomic checkpoints of the global state: a list of arrays plus JSON metadata."""

from __future__ import annotations

import base64
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from fl_app.crypto.secret_files import write_private

_META_KEY = "__meta__"
STATISTICS_FILE = "statistics.json"  # a run's federated statistics, beside its checkpoint
_ARRAY_PREFIX = "array_"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not fit the run."""


def save_checkpoint(path: Path, arrays: list[np.ndarray], meta: dict[str, Any]) -> None:
    """Write `arrays` and `meta` so that `path` is always either old or new, never torn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {f"{_ARRAY_PREFIX}{i}": a for i, a in enumerate(arrays)}
    payload[_META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            np.savez(tmp, **payload)
            tmp.flush()
            os.fsync(tmp.fileno())
        Path(tmp_name).replace(path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Arrays and metadata of a checkpoint written by `save_checkpoint`."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(npz[_META_KEY].tobytes().decode())
            count = sum(1 for k in npz.files if k.startswith(_ARRAY_PREFIX))
            arrays = [npz[f"{_ARRAY_PREFIX}{i}"] for i in range(count)]
    except KeyError as err:
        raise CheckpointError(f"checkpoint {path} is not an fl_app checkpoint: {err}") from err
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        # truncated, bit-flipped (zip CRC), or not a zip file at all
        raise CheckpointError(
            f"checkpoint {path} is damaged: unreadable ({type(err).__name__}: {err}); restore "
            "it from a copy, or start a new run in another output-dir"
        ) from err
    if not isinstance(meta, dict) or "completed_rounds" not in meta:
        raise CheckpointError(f"checkpoint {path} is not an fl_app checkpoint: no metadata")
    return arrays, meta


def with_server_state(
    weights: list[np.ndarray], server_state: dict[str, list[np.ndarray]]
) -> tuple[list[np.ndarray], dict[str, int]]:
    """The arrays of a checkpoint holding the global model and the server optimiser's
    state (FedAdam's moments, FedAvgM's momentum), and the count of each after it."""
    arrays = list(weights)
    for part in server_state.values():
        arrays += part
    return arrays, {name: len(part) for name, part in server_state.items()}


def split_server_state(
    arrays: list[np.ndarray], counts: dict[str, int]
) -> tuple[list[np.ndarray], dict[str, list[np.ndarray]]]:
    """`with_server_state` undone: the global model, and the server optimiser's state."""
    end = len(arrays) - sum(counts.values())
    weights, state, start = arrays[:end], {}, end
    for name, count in counts.items():
        state[name], start = arrays[start : start + count], start + count
    return weights, state


def save_statistics(run_dir: Path, total: bytes, *, holders: int, encrypted: bool) -> None:
    """The holders' summed federated statistics (ciphertexts under HE), 0600."""
    record = {"holders": holders, "encrypted": encrypted, "total": base64.b64encode(total).decode()}
    write_private(run_dir / STATISTICS_FILE, json.dumps(record).encode())


def load_statistics(run_dir: Path) -> dict[str, Any] | None:
    """`save_statistics`' record (its total as bytes), or None for a run without."""
    path = run_dir / STATISTICS_FILE
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
        return {**saved, "total": base64.b64decode(saved["total"])}
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path} is damaged: {type(err).__name__}: {err}") from err
