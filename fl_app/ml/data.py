"""A task's data pool, federated partitioning and per-client splits (offline, seeded).

Data is named by a `DataSpec` (fl_app.ml.sources), or by the name of a bundled set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from datasets import Dataset
from flwr_datasets.partitioner import DirichletPartitioner, IidPartitioner, Partitioner
from sklearn.model_selection import train_test_split

from fl_app.ml.checks import DataError
from fl_app.ml.features import Features, fingerprint, take
from fl_app.ml.scaling import PREPROCESSING, standardise
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


@dataclass(frozen=True)
class PartitionSpec:
    """How the client pool is divided (hashable, so partitions can be cached)."""

    name: str  # iid | dirichlet
    num_partitions: int
    alpha: float = 0.5
    min_partition_size: int = 10
    self_balancing: bool = False

    @classmethod
    def from_config(cls, partition: Any, num_partitions: int) -> PartitionSpec:
        """The spec of a `partition` config node (conf/partition/*.yaml)."""
        return cls(
            name=str(partition.name),
            num_partitions=num_partitions,
            alpha=float(partition.alpha),
            min_partition_size=int(partition.min_partition_size),
            self_balancing=bool(partition.self_balancing),
        )


def preprocess(data: DataSpec | str, train: Split, *others: Split) -> tuple[Split, ...]:
    """The task's preprocessing: with the task's public statistics, or else fitted on
    `train` (one holder's own data) only."""
    data = DataSpec.of(data)
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
    return rows.take(pool), rows.take(test)


def source_fingerprint(data: DataSpec | str) -> str:
    """SHA-256 of every row of the task's source (what a resumed simulation must share)."""
    return _source_fingerprint(DataSpec.of(data))


@lru_cache(maxsize=8)
def _source_fingerprint(data: DataSpec) -> str:
    rows = Split(*load_source(data))
    return fingerprint(rows.x, rows.y)


def make_partitioner(spec: PartitionSpec, seed: int) -> Partitioner:
    """The flwr-datasets partitioner for `spec`."""
    if spec.num_partitions < 1:
        raise ValueError(f"num_partitions={spec.num_partitions} is invalid: allowed >= 1")
    if spec.name == "iid":
        return IidPartitioner(num_partitions=spec.num_partitions)
    if spec.name == "dirichlet":
        if spec.alpha <= 0:
            raise ValueError(f"alpha={spec.alpha} is invalid: allowed a number > 0")
        return DirichletPartitioner(
            num_partitions=spec.num_partitions,
            partition_by="label",
            alpha=spec.alpha,
            min_partition_size=spec.min_partition_size,
            self_balancing=spec.self_balancing,
            seed=seed,
        )
    raise ValueError(f"partition={spec.name!r} is unknown: allowed ['dirichlet', 'iid']")


def partition_indices(labels: np.ndarray, spec: PartitionSpec, seed: int) -> tuple[np.ndarray, ...]:
    """Row indices of every partition of `labels` under `spec`."""
    if spec.num_partitions > len(labels):
        raise ValueError(
            f"num_partitions={spec.num_partitions} is invalid: allowed at most "
            f"{len(labels)} (rows in the client pool)"
        )
    partitioner = make_partitioner(spec, seed)
    # Shuffle first, as FederatedDataset does: IidPartitioner shards contiguously.
    rows = Dataset.from_dict({"row": np.arange(len(labels)), "label": np.asarray(labels)})
    partitioner.dataset = rows.shuffle(seed=seed)
    return tuple(
        np.asarray(partitioner.load_partition(pid)["row"], dtype=np.int64)
        for pid in range(spec.num_partitions)
    )


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
    return partition_indices(pool.y, spec, seed)


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
