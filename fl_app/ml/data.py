"""A task's data pool, federated partitioning and per-client splits (offline, seeded).

Data is named by a `DataSpec` (fl_app.ml.sources), or by the name of a bundled set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from fl_app.ml.checks import DataError
from fl_app.ml.columns import COLUMN_SOURCES, column_values
from fl_app.ml.features import Features, fingerprint, take
from fl_app.ml.partitions import PartitionSpec, partition_indices
from fl_app.ml.scaling import FEDERATED, PREPROCESSING, standardise
from fl_app.ml.sources import DataSpec, load_source


@dataclass(frozen=True)
class Split:
    """Model inputs (one array or named arrays) and targets (integer labels, or values
    for regression) of one split."""

    x: Features
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def take(self, rows: Any) -> Split:
        """The examples `rows` (indices or a slice) of this split."""
        return Split(take(self.x, rows), self.y[rows])


@dataclass(frozen=True)
class ClientData:
    """What one client holds: a training split and a local test split."""

    train: Split
    test: Split


def preprocess(data: DataSpec | str, train: Split, *others: Split) -> tuple[Split, ...]:
    """The task's preprocessing: with the task's public statistics, or else fitted on
    `train` (one holder's own data) only."""
    data = DataSpec.of(data)
    if data.preprocess == "standardize" and data.stats == FEDERATED:
        return (train, *others)  # scaled by each holder once the global statistics arrive
    if data.preprocess == "standardize":
        stats = json.loads(data.stats) if data.stats else None  # None: `train`'s own
        scaled = standardise(train.x, *(s.x for s in others), stats=stats)
        return tuple(Split(x, s.y) for x, s in zip(scaled, (train, *others), strict=True))
    if data.preprocess != "none":
        raise ValueError(f"preprocess={data.preprocess!r} is unknown: allowed {PREPROCESSING}")
    return (train, *others)


def pool_and_server_test(
    data: DataSpec | str, server_test_fraction: float, seed: int
) -> tuple[Split, Split]:
    """The clients' pool and the server's held-out test set (stratified by label)."""
    return _pool_and_server_test(DataSpec.of(data), server_test_fraction, seed)


@lru_cache(maxsize=8)
def _pool_and_server_test(
    data: DataSpec, server_test_fraction: float, seed: int
) -> tuple[Split, Split]:
    rows = Split(*load_source(data))
    pool, test = _pool_rows(data, server_test_fraction, seed)
    return rows.take(pool), rows.take(test)


@lru_cache(maxsize=8)
def _pool_rows(
    data: DataSpec, server_test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers of the source's clients' pool and of the server's test set."""
    rows = Split(*load_source(data))
    if server_test_fraction == 0:  # nothing held out: every row is a holder's
        return np.arange(len(rows)), np.arange(0)
    if data.classification:
        labels, counts = np.unique(rows.y, return_counts=True)
        if counts.min() < 2:
            raise DataError(
                f"source {data.source!r}: label {labels[counts.argmin()]} has "
                f"{counts.min()} row(s); the server's stratified test split "
                "(task.server_test_fraction) needs at least 2 of every label"
            )
    pool, test = train_test_split(  # row indices: the same split as of the arrays
        np.arange(len(rows)), test_size=server_test_fraction, random_state=seed,
        stratify=rows.y if data.classification else None,
    )  # fmt: skip
    return pool, test


def source_fingerprint(data: DataSpec | str) -> str:
    """SHA-256 of every row of the task's source (what a resumed simulation must share)."""
    return _source_fingerprint(DataSpec.of(data))


@lru_cache(maxsize=8)
def _source_fingerprint(data: DataSpec) -> str:
    rows = Split(*load_source(data))
    return fingerprint(rows.x, rows.y)


def pool_partitions(
    data: DataSpec | str, server_test_fraction: float, spec: PartitionSpec, seed: int
) -> tuple[np.ndarray, ...]:
    """Partitions of the client pool, computed once per process (clients share it)."""
    data = DataSpec.of(data)
    if spec.name == "dirichlet" and not data.classification:
        raise ValueError(
            "partition=dirichlet splits by label: allowed only for classification tasks"
        )
    return _pool_partitions(data, server_test_fraction, spec, seed)


@lru_cache(maxsize=8)
def _pool_partitions(
    data: DataSpec, server_test_fraction: float, spec: PartitionSpec, seed: int
) -> tuple[np.ndarray, ...]:
    pool, _ = _pool_and_server_test(data, server_test_fraction, seed)
    groups = None
    if spec.name == "natural":
        if data.source not in COLUMN_SOURCES:
            raise ValueError(
                f"partition=natural reads a column: allowed for the table and huggingface "
                f"sources, not task.source={data.source!r}"
            )
        pool_rows, _ = _pool_rows(data, server_test_fraction, seed)
        groups = column_values(data.source, data.kwargs, spec.by)[pool_rows]
    return partition_indices(pool.y, spec, seed, groups)


def load_client_data(
    data: DataSpec | str,
    spec: PartitionSpec,
    partition_id: int,
    *,
    server_test_fraction: float,
    client_test_fraction: float,
    seed: int,
) -> ClientData:
    """The train/test data of client `partition_id` under `spec`."""
    if not 0 <= partition_id < spec.num_partitions:
        raise ValueError(
            f"partition_id={partition_id} is invalid: allowed 0..{spec.num_partitions - 1}"
        )
    pool, _ = pool_and_server_test(data, server_test_fraction, seed)
    rows = pool_partitions(data, server_test_fraction, spec, seed)[partition_id]
    if len(rows) < 2:
        raise ValueError(
            f"partition {partition_id} has {len(rows)} rows; at least 2 are needed "
            "for a train/test split (use fewer partitions or a larger alpha)"
        )
    train_rows, test_rows = train_test_split(
        rows, test_size=client_test_fraction, random_state=seed + partition_id
    )
    train, test = preprocess(data, pool.take(train_rows), pool.take(test_rows))
    return ClientData(train=train, test=test)


def load_server_test(data: DataSpec | str, server_test_fraction: float, seed: int) -> Split:
    """The held-out set for centralised evaluation (plaintext mode only)."""
    _, test = pool_and_server_test(data, server_test_fraction, seed)
    return preprocess(data, test)[0]


def sample_rows(data: DataSpec | str, server_test_fraction: float, seed: int) -> Split:
    """Rows for the server's checks of model and data (simulation): its test set, or
    when nothing is held out, the pool's first rows, preprocessed alike."""
    pool, test = pool_and_server_test(data, server_test_fraction, seed)
    return preprocess(data, test if len(test) else pool.take(slice(0, 64)))[0]
