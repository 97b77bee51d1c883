"""A task's model inputs: one array, or a dict of named arrays for a model with several
named inputs (Keras matches the dict's keys to its `Input` names).

Integer arrays (token or category ids into an `Embedding`) keep their integer dtype end
to end: sources, partitions, node files, preprocessing (which scales only floating-point
inputs) and training.
"""

from __future__ import annotations

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
    """Integer and boolean columns as int64 (ids stay exact), everything else float32."""
    array = np.asarray(array)
    return array.astype(np.int64 if array.dtype.kind in "iub" else np.float32)


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


def standardise(train: Features, *others: Features) -> tuple[Features, ...]:
    """Scale every floating-point input with statistics of `train` only (one holder's own
    data); integer inputs (ids) pass unchanged."""
    if not isinstance(train, dict):
        return _standardise_array(train, *others)
    scaled = {
        name: _standardise_array(array, *(other[name] for other in others))
        for name, array in train.items()
    }
    return tuple({name: parts[i] for name, parts in scaled.items()} for i in range(len(others) + 1))


def _standardise_array(train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    if train.dtype.kind != "f":
        return (train, *others)
    mean = train.mean(axis=0)
    std = train.std(axis=0) + 1e-6
    return tuple(((a - mean) / std).astype(np.float32) for a in (train, *others))
