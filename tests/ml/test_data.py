"""Partitioning through flwr-datasets: sizes, determinism, real skew."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import numpy as np
import pytest

from fl_app.ml.checks import DataError
from fl_app.ml.data import (
    PartitionSpec,
    Split,
    load_client_data,
    load_server_test,
    partition_indices,
    preprocess,
)
from fl_app.ml.sources import BUNDLED, PUBLISHED_STATS, DataSpec, load_source

LABELS = np.repeat(np.arange(10), 100)


@pytest.mark.parametrize("spec", [PartitionSpec("iid", 7), PartitionSpec("dirichlet", 7, 0.5)])
def test_partitions_cover_every_row_exactly_once(spec):
    parts = partition_indices(LABELS, spec, seed=1)
    assert len(parts) == 7
    rows = np.concatenate(parts)
    assert sorted(rows.tolist()) == list(range(len(LABELS)))


@pytest.mark.parametrize("name", ["iid", "dirichlet"])
def test_same_seed_same_partitions_other_seed_other(name):
    spec = PartitionSpec(name, 5, alpha=0.5)
    first = partition_indices(LABELS, spec, seed=3)
    again = partition_indices(LABELS, spec, seed=3)
    other = partition_indices(LABELS, spec, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def _label_share_spread(parts: tuple[np.ndarray, ...]) -> float:
    """Mean over clients of the largest single-label share of their data."""
    shares = [np.bincount(LABELS[p], minlength=10).max() / len(p) for p in parts]
    return float(np.mean(shares))


def test_dirichlet_with_small_alpha_is_skewed_and_iid_is_not():
    iid = _label_share_spread(partition_indices(LABELS, PartitionSpec("iid", 10), seed=0))
    skewed = _label_share_spread(
        partition_indices(LABELS, PartitionSpec("dirichlet", 10, alpha=0.1), seed=0)
    )
    assert iid < 0.2  # about 1/10 of each label
    assert skewed > 0.4  # one label dominates a typical client


def test_client_data_is_split_deterministically_and_disjoint():
    spec = PartitionSpec("iid", 4)
    kwargs = {"server_test_fraction": 0.2, "client_test_fraction": 0.25, "seed": 7}
    first = load_client_data("digits", spec, 2, **kwargs)
    again = load_client_data("digits", spec, 2, **kwargs)
    np.testing.assert_array_equal(first.train.x, again.train.x)
    assert len(first.test) == pytest.approx(0.25 * (len(first.train) + len(first.test)), abs=1)
    assert first.train.x.shape[1:] == (8, 8, 1)
    sizes = sum(
        len(d.train) + len(d.test)
        for d in (load_client_data("digits", spec, i, **kwargs) for i in range(4))
    )
    assert sizes + len(load_server_test("digits", 0.2, 7)) == 1797


def test_tabular_features_are_standardised_with_local_statistics():
    holders_own = dataclasses.replace(BUNDLED["breast_cancer"], stats="")
    data = load_client_data(
        holders_own,
        PartitionSpec("iid", 3),
        0,
        server_test_fraction=0.2,
        client_test_fraction=0.2,
        seed=0,
    )
    np.testing.assert_allclose(data.train.x.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(data.train.x.std(axis=0), 1.0, atol=1e-3)


def test_bundled_tabular_sets_are_scaled_with_their_published_statistics_only():
    """Public statistics: a holder's scaling does not depend on which records it holds."""
    kwargs = dict(server_test_fraction=0.2, client_test_fraction=0.2, seed=0)
    first, second = (
        load_client_data("breast_cancer", PartitionSpec("iid", 3), i, **kwargs) for i in (0, 1)
    )
    raw, _ = load_source(BUNDLED["breast_cancer"])
    stats = PUBLISHED_STATS["breast_cancer"]
    expected = (raw - np.asarray(stats["mean"])) / np.asarray(stats["std"])
    for data in (first, second):  # every scaled row is a row of the published scaling
        rows = {tuple(np.round(r, 3)) for r in expected.astype(np.float32)}
        assert all(tuple(np.round(r, 3)) in rows for r in data.train.x[:20])
    assert np.abs(first.train.x).max() < 1.05  # the documented (rounded) ranges hold the values
    diabetes = load_client_data("diabetes", PartitionSpec("iid", 3), 0, **kwargs)
    assert 0.5 < float(diabetes.train.x.std()) < 1.5


def test_public_statistics_are_checked_against_the_examples():
    train = Split(np.ones((4, 3), np.float32), np.zeros(4, np.int64))
    spec = DataSpec("x", preprocess="standardize")
    scaled = preprocess(replace(spec, stats='{"mean": [1, 1, 1], "std": 2}'), train)[0]
    np.testing.assert_allclose(scaled.x, 0.0)
    for stats, message in [
        ('{"mean": [1, 1], "std": 1}', r"do not fit examples of shape \(3,\)"),
        ('{"mean": 0, "std": 0}', "standard deviations > 0"),
        ('{"mean": 0}', r"allowed \{mean"),
    ]:
        with pytest.raises(DataError, match=rf"task\.preprocess_stats: .*{message}"):
            preprocess(replace(spec, stats=stats), train)
    named = Split({"a": np.ones((4, 2), np.float32), "ids": np.arange(4)}, np.zeros(4))
    with pytest.raises(DataError, match=r"task\.preprocess_stats\.a: allowed .* got nothing"):
        preprocess(replace(spec, stats='{"b": {"mean": 0, "std": 1}}'), named)
    ok = preprocess(replace(spec, stats='{"a": {"mean": 1, "std": 1}}'), named)[0]
    assert ok.x["a"].max() == 0 and ok.x["ids"].dtype == np.int64  # ids pass unchanged


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"spec": PartitionSpec("dirichlet", 3, alpha=0.0)}, "alpha=0.0"),
        ({"spec": PartitionSpec("zipf", 3)}, "partition='zipf'"),
        ({"spec": PartitionSpec("iid", 3), "partition_id": 3}, "partition_id=3"),
        ({"spec": PartitionSpec("iid", 3), "task": "mnist"}, "task='mnist'"),
    ],
)
def test_bad_partition_requests_name_the_value(kwargs, message):
    args = {"task": "digits", "partition_id": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        load_client_data(
            args["task"],
            args["spec"],
            args["partition_id"],
            server_test_fraction=0.2,
            client_test_fraction=0.2,
            seed=0,
        )
