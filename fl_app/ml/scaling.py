"""Standardisation of a task's inputs, (x - mean) / std, with statistics that are public
(given in the task config) or a holder's own (computed from its private training split).

Where the statistics come from decides what record-level DP can promise: a holder's own
mean and std change with every record, so removing one record rescales all the others
and the per-record bound of DP-SGD no longer holds. `statistics_source` names the
choice; record-level DP allows only "none" and "public" (fl_app.config.validate).
Federated statistics (fl_app.ml.statistics), summed under the run's privacy mode, are
the pooled data's, the same for every holder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fl_app.ml.checks import DataError
from fl_app.ml.features import Features

PREPROCESSING = ("none", "standardize")
STATISTICS_SOURCES = ("none", "public", "holder")
# DataSpec.stats of federated statistics: data is loaded unscaled, and each holder scales
# it with the holders' summed statistics once they arrive (fl_app.ml.statistics)
FEDERATED = "federated"


def statistics_source(preprocess: str, stats_given: bool) -> str:
    """Where `preprocess`'s statistics come from: none needed, public (given), or each
    holder's own private data."""
    if preprocess == "none":
        return "none"
    return "public" if stats_given else "holder"


def standardise(train: Features, *others: Features, stats: Any = None) -> tuple[Features, ...]:
    """Scale every floating-point input to (x - mean) / std; integer inputs (ids) pass
    unchanged. With `stats` (public statistics: {"mean": ..., "std": ...}, or for named
    inputs {input name: {"mean": ..., "std": ...}}) those; without, the statistics of
    `train`, which are one holder's own and private."""
    if not isinstance(train, dict):
        return _standardise_array("", train, *others, stats=stats)
    if stats is not None and not isinstance(stats, Mapping):
        raise DataError(f"task.preprocess_stats: {STATS_FORM} per named input, got {stats!r}")
    scaled = {}
    for name, array in train.items():
        given = None if stats is None else stats.get(name, _MISSING)
        scaled[name] = _standardise_array(
            f".{name}", array, *(other[name] for other in others), stats=given
        )
    return tuple({name: parts[i] for name, parts in scaled.items()} for i in range(len(others) + 1))


STATS_FORM = "{mean: [...], std: [...]} (one value, or one per feature)"
_MISSING = object()


def _standardise_array(
    where: str, train: np.ndarray, *others: np.ndarray, stats: Any = None
) -> tuple[np.ndarray, ...]:
    if train.dtype.kind != "f":
        return (train, *others)
    if stats is None:
        mean, std = train.mean(axis=0), train.std(axis=0) + 1e-6
    else:
        mean, std = _given(f"task.preprocess_stats{where}", stats, train.shape[1:])
    return tuple(((a - mean) / std).astype(np.float32) for a in (train, *others))


def _given(key: str, stats: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Public mean and std that fit examples of `shape`, or DataError naming `key`."""
    if not isinstance(stats, Mapping) or set(stats) != {"mean", "std"}:
        shown = "nothing" if stats is _MISSING else repr(stats)[:80]
        raise DataError(f"{key}: allowed {STATS_FORM}, got {shown}")
    try:
        mean, std = (np.asarray(stats[k], dtype=np.float64) for k in ("mean", "std"))
        np.broadcast_to(mean, shape), np.broadcast_to(std, shape)
    except (TypeError, ValueError) as err:
        raise DataError(
            f"{key}: mean {np.shape(stats['mean'])} and std {np.shape(stats['std'])} do not "
            f"fit examples of shape {shape}: allowed one value, or one per feature ({err})"
        ) from err
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
        raise DataError(f"{key}: allowed finite means and standard deviations > 0")
    return mean.astype(np.float32), std.astype(np.float32)
