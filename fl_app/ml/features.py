"""A task's model inputs: one array, or a dict of named arrays for a model with several
named inputs (Keras matches the dict's keys to its `Input` names).

Integer arrays (token or category ids into an `Embedding`) keep their integer dtype end
to end: sources, partitions, node files, preprocessing (which scales only floating-point
inputs) and training. Text arrays (categorical codes, free text) pass through the same
way, as str, to a model input of dtype "string" whose own Keras layers (`Hashing`,
`StringLookup`, `TextVectorization`) encode them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

Features = np.ndarray | dict[str, np.ndarray]


def num_rows(x: Features) -> int:
    """The number of examples in `x`."""
    if isinstance(x, dict):
        counts = {len(array) for array in x.values()}
        if len(counts) != 1:
            raise ValueError(f"named inputs have different row counts: {describe(x)}")
        return counts.pop()
    return len(x)


def take(x: Features, rows: Any) -> Features:
    """The examples `rows` (indices or a slice) of `x`, in the same structure."""
    if isinstance(x, dict):
        return {name: array[rows] for name, array in x.items()}
    return x[rows]


def describe(x: Features) -> str:
    """The per-example shape(s) and dtype(s) of `x`, for error messages."""
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k}: {v.shape[1:]} {v.dtype}" for k, v in x.items()) + "}"
    return f"{x.shape[1:]} {x.dtype}"


def typed(array: np.ndarray) -> np.ndarray:
    """Integer and boolean columns as int64 (ids stay exact), text as str (for a model
    input of dtype "string": its own Keras layers encode it), everything else float32."""
    array = np.asarray(array)
    if is_text(array):
        return as_text(array)
    return array.astype(np.int64 if array.dtype.kind in "iub" else np.float32)


def as_text(array: np.ndarray) -> np.ndarray:
    """Text as an object array of Python str: what Keras takes for a string input
    (it refuses numpy's fixed-width unicode arrays)."""
    return np.asarray(array).astype(str).astype(object)


def is_text(array: np.ndarray) -> bool:
    """Whether `array` holds strings (str, bytes, or objects that all are str)."""
    if array.dtype.kind in "US":
        return True
    return array.dtype.kind == "O" and all(isinstance(v, str) for v in array.ravel())


def gather(
    column: Callable[[str], np.ndarray], inputs: Mapping[str, str | Sequence[str]]
) -> dict[str, np.ndarray]:
    """Named inputs from table columns: a column name gives one value per example (shape
    `(n,)`), a list of names one vector per example (`(n, k)`), each `typed`."""
    out = {}
    for name, spec in inputs.items():
        if isinstance(spec, str):
            out[name] = typed(column(spec))
        else:
            out[name] = typed(np.stack([np.asarray(column(c)) for c in spec], axis=1))
    return out


def fingerprint(x: Features, y: np.ndarray) -> str:
    """SHA-256 of examples and targets (shapes, dtypes and bytes; named inputs by name)."""
    digest = hashlib.sha256()
    arrays = sorted(x.items()) if isinstance(x, dict) else [("", x)]
    for name, array in [*arrays, ("\0targets", y)]:
        array = np.ascontiguousarray(array.astype(str) if array.dtype.kind == "O" else array)
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
