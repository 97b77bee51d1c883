"""partition=natural: one partition per distinct value of a column (a site), through
flwr-datasets' NaturalIdPartitioner, in simulation and in exported node files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fl_app.config import ConfigError, compose_config
from fl_app.config.task import data_spec
from fl_app.ml.checks import DataError
from fl_app.ml.data import PartitionSpec, load_client_data, pool_and_server_test, pool_partitions
from fl_app.ml.node_files import export_partitions, read_data_file
from fl_app.ml.sources import DataSpec

SITES = ["lyon", "oslo", "kyiv", "pune"]


@pytest.fixture(scope="module")
def sites_table(tmp_path_factory):
    rng = np.random.default_rng(5)
    sizes = [30, 55, 80, 41]
    frame = pd.DataFrame(rng.normal(size=(sum(sizes), 3)), columns=["a", "b", "c"])
    frame["site_code"] = np.repeat(SITES, sizes)
    frame["y"] = (frame["a"] > 0).astype("int64")
    frame = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)  # sites mixed
    path = tmp_path_factory.mktemp("sites") / "sites.parquet"
    frame.to_parquet(path)
    return path, frame


def _task(path, *extra: str) -> list[str]:
    return [
        "task=breast_cancer", "task.source=fl_app.ml.sources.table", "task.preprocess=none",
        "task.preprocess_stats=null", f"+task.source_args={{path: '{path}', target: y}}",
        "partition=natural", "partition.by=site_code", *extra,
    ]  # fmt: skip


def test_one_partition_per_site_in_sorted_order_with_the_column_dropped(sites_table):
    path, frame = sites_table
    cfg = compose_config(_task(path))
    data = data_spec(cfg.task, cfg.partition)
    spec = PartitionSpec.from_config(cfg.partition, 4)
    pool, _ = pool_and_server_test(data, 0.2, 0)
    assert pool.x.shape[1] == 3  # a, b, c: not the site
    parts = pool_partitions(data, 0.2, spec, 0)
    assert sum(map(len, parts)) == len(pool) and len(np.unique(np.concatenate(parts))) == len(pool)
    for rows, site in zip(parts, sorted(SITES), strict=True):
        by_site = frame[frame.site_code == site][["a", "b", "c"]].to_numpy(np.float32)
        assert {tuple(r) for r in pool.x[rows]} <= {tuple(r) for r in by_site}
        assert len(rows) >= 0.6 * len(by_site)  # the site's rows, less the server's 20 %
    client = load_client_data(
        data, spec, 1, server_test_fraction=0.2, client_test_fraction=0.2, seed=0
    )
    assert len(client.train) + len(client.test) == len(parts[1])


def test_keep_column_keeps_the_site_as_an_input(sites_table):
    path, _ = sites_table
    cfg = compose_config(
        _task(path, "partition.keep_column=true", "+task.source_args.features=[a,site_code]")
    )
    with pytest.raises(DataError, match=r"column 'site_code' holds object values"):
        pool_and_server_test(data_spec(cfg.task, cfg.partition), 0.2, 0)  # strings: not numeric
    assert "exclude" not in json.loads(data_spec(cfg.task, cfg.partition).args)


def test_a_count_of_supernodes_other_than_the_sites_is_refused_naming_both(sites_table):
    path, _ = sites_table
    cfg = compose_config(_task(path))
    with pytest.raises(
        ValueError, match=r"makes 4 partitions .* 10 SuperNodes: set num-supernodes=4"
    ):
        pool_partitions(
            data_spec(cfg.task, cfg.partition), 0.2, PartitionSpec.from_config(cfg.partition, 10), 0
        )


def test_natural_needs_a_column_and_a_column_source():
    with pytest.raises(ConfigError, match=r"partition\.by"):
        compose_config(["task=breast_cancer", "partition=natural"])
    with pytest.raises(ConfigError, match=r"task\.source"):
        compose_config(["task=breast_cancer", "partition=natural", "partition.by=x"])
    with pytest.raises(ValueError, match="reads a column"):
        pool_partitions(DataSpec("breast_cancer"), 0.2, PartitionSpec("natural", 2, by="x"), 0)


def test_exported_node_files_are_the_sites(sites_table, tmp_path):
    path, _ = sites_table
    cfg = compose_config(_task(path))
    data = data_spec(cfg.task, cfg.partition)
    spec = PartitionSpec.from_config(cfg.partition, 4)
    files = export_partitions(
        data, spec, tmp_path, server_test_fraction=0.2, seed=0, file_format="csv"
    )
    assert list(pd.read_csv(files[0]).columns) == ["a", "b", "c", "y"]
    pool, _ = pool_and_server_test(data, 0.2, 0)
    for file, rows in zip(files, pool_partitions(data, 0.2, spec, 0), strict=True):
        np.testing.assert_allclose(read_data_file(file, data).x, pool.x[rows], rtol=1e-6)
