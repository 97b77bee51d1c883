"""How a client pool is divided: flwr-datasets' partitioners over row numbers.

`iid` and `dirichlet` (label skew) split the rows of the pool; `natural` gives one
partition per distinct value of a column (`partition.by`: a site, a hospital, a user),
the way a cross-silo federation is divided in fact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from datasets import Dataset
from flwr_datasets.partitioner import (
    DirichletPartitioner,
    IidPartitioner,
    NaturalIdPartitioner,
    Partitioner,
)


@dataclass(frozen=True)
class PartitionSpec:
    """How the client pool is divided (hashable, so partitions can be cached)."""

    name: str  # iid | dirichlet | natural
    num_partitions: int
    alpha: float = 0.5
    min_partition_size: int = 10
    self_balancing: bool = False
    by: str = ""  # natural: the column whose distinct values are the partitions

    @classmethod
    def from_config(cls, partition: Any, num_partitions: int) -> PartitionSpec:
        """The spec of a `partition` config node (conf/partition/*.yaml)."""
        return cls(
            name=str(partition.name),
            num_partitions=num_partitions,
            alpha=float(partition.alpha),
            min_partition_size=int(partition.min_partition_size),
            self_balancing=bool(partition.self_balancing),
            by=str(partition.by or ""),
        )


def make_partitioner(spec: PartitionSpec, seed: int) -> Partitioner:
    """The flwr-datasets partitioner for `spec`."""
    if spec.num_partitions < 1:
        raise ValueError(f"num_partitions={spec.num_partitions} is invalid: allowed >= 1")
    if spec.name == "iid":
        return IidPartitioner(num_partitions=spec.num_partitions)
    if spec.name == "natural":
        return NaturalIdPartitioner(partition_by="group")
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
    raise ValueError(f"partition={spec.name!r} is unknown: allowed ['dirichlet', 'iid', 'natural']")


def partition_indices(
    labels: np.ndarray, spec: PartitionSpec, seed: int, groups: np.ndarray | None = None
) -> tuple[np.ndarray, ...]:
    """Row indices of every partition of `labels` under `spec` (natural: of `groups`, the
    values of its column, one partition per distinct value in sorted order)."""
    if spec.name == "natural":
        return _natural_partitions(spec, groups)
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


def _natural_partitions(spec: PartitionSpec, groups: np.ndarray | None) -> tuple[np.ndarray, ...]:
    if groups is None:
        raise ValueError("partition=natural needs the values of its column (partition.by)")
    partitioner = make_partitioner(spec, 0)
    partitioner.dataset = Dataset.from_dict({"row": np.arange(len(groups)), "group": groups})
    found = partitioner.num_partitions
    if found != spec.num_partitions:
        raise ValueError(
            f"partition=natural by {spec.by!r} makes {found} partitions (its distinct "
            f"values), but there are {spec.num_partitions} SuperNodes: set "
            f"num-supernodes={found} (and federation.num_supernodes={found})"
        )
    return tuple(
        np.asarray(partitioner.load_partition(pid)["row"], dtype=np.int64) for pid in range(found)
    )
