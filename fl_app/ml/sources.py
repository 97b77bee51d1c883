"""Where a task's examples come from: a bundled scikit-learn set or a user's callable.

A source is named by a string: a bundled set (`digits`, `breast_cancer`, `diabetes`) or
the import path of a callable (`package.module.function` or `package.module:function`)
that returns `(x, y)` arrays, with `args` as its keyword arguments. Nothing downloads.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits

PREPROCESSING = ("none", "standardize")  # per holder, with its own statistics


@dataclass(frozen=True)
class DataSpec:
    """What a task's data is (hashable, so pools and partitions can be cached)."""

    source: str  # a bundled set's name, or the import path of a callable -> (x, y)
    args: tuple[tuple[str, Any], ...] = ()  # keyword arguments of the callable
    preprocess: str = "none"  # none | standardize (each holder with its own statistics)
    classification: bool = True  # integer labels (stratified splits, Dirichlet partitions)
    feature_shape: tuple[int, ...] | None = None  # shape of one example, when known
    num_classes: int | None = None  # label range 0..num_classes-1, when known

    @classmethod
    def of(cls, data: DataSpec | str) -> DataSpec:
        """`data` itself, or the spec of the bundled set it names."""
        if isinstance(data, DataSpec):
            return data
        if data not in BUNDLED:
            raise ValueError(f"task={data!r} is unknown: allowed {sorted(BUNDLED)} (bundled sets)")
        return BUNDLED[data]


def _digits() -> tuple[np.ndarray, np.ndarray]:
    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[..., np.newaxis]
    return x, bunch.target.astype(np.int64)


def _breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    bunch = load_breast_cancer()
    return bunch.data.astype(np.float32), bunch.target.astype(np.int64)


def _diabetes() -> tuple[np.ndarray, np.ndarray]:
    # The target (disease progression, 25..346) in units of 100: a fixed unit, not a
    # statistic of the data, so that an MLP starting near 0 needs no huge steps.
    bunch = load_diabetes()
    return bunch.data.astype(np.float32), (bunch.target / 100.0).astype(np.float32)


_BUNDLED_LOADERS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
    "digits": _digits,
    "breast_cancer": _breast_cancer,
    "diabetes": _diabetes,
}
BUNDLED = {
    # 8x8 handwritten digits, already scaled to [0, 1]
    "digits": DataSpec("digits", feature_shape=(8, 8, 1), num_classes=10),
    # Wisconsin breast-cancer diagnosis, 30 features
    "breast_cancer": DataSpec(
        "breast_cancer", preprocess="standardize", feature_shape=(30,), num_classes=2
    ),
    # diabetes progression after one year (regression), 10 features
    "diabetes": DataSpec(
        "diabetes", preprocess="standardize", classification=False, feature_shape=(10,)
    ),
}


def resolve(path: str) -> Any:
    """The object an import path (`pkg.mod.name` or `pkg.mod:name`) names."""
    module, sep, name = path.partition(":")
    if not sep:
        module, _, name = path.rpartition(".")
    if not module or not name:
        raise ValueError(f"{path!r} is not an import path: allowed 'package.module.name'")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{path!r} does not import: {type(err).__name__}: {err}") from err


def load_source(data: DataSpec) -> tuple[np.ndarray, np.ndarray]:
    """The examples and targets of a source, checked to pair up."""
    if data.source in _BUNDLED_LOADERS:
        x, y = _BUNDLED_LOADERS[data.source]()
    else:
        x, y = _call(resolve(data.source), dict(data.args))
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(
            f"source {data.source!r} returned {len(x)} examples and {len(y)} targets: "
            "allowed the same number, at least one"
        )
    return x, y


def _call(fn: Any, args: Mapping[str, Any]) -> Any:
    if not callable(fn):
        raise ValueError(f"{fn!r} is not callable")
    return fn(**args)
