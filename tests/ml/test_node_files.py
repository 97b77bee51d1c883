"""Per-node data files: export, bring-your-own CSV/NPZ, and clear refusals."""

from __future__ import annotations

import numpy as np
import pytest

from fl_app.ml.data import PartitionSpec
from fl_app.ml.node_files import export_partitions, load_node_data, read_data_file


@pytest.mark.parametrize("file_format", ["npz", "csv", "parquet"])
def test_exported_partitions_round_trip_and_cover_the_pool(tmp_path, file_format):
    spec = PartitionSpec("dirichlet", 4, alpha=1.0)
    paths = export_partitions(
        "breast_cancer", spec, tmp_path, server_test_fraction=0.2, seed=3,
        file_format=file_format,
    )  # fmt: skip
    assert [p.name for p in paths] == [f"partition_{i}.{file_format}" for i in range(4)]
    splits = [read_data_file(p, "breast_cancer") for p in paths]
    assert sum(len(s) for s in splits) == 569 - round(0.2 * 569)
    assert all(s.x.shape[1:] == (30,) for s in splits)
    node = load_node_data(paths[0], "breast_cancer", client_test_fraction=0.25, seed=0)
    assert len(node.train) + len(node.test) == len(splits[0])


def test_bring_your_own_csv_with_a_label_column(tmp_path):
    rows = np.column_stack([np.random.default_rng(0).normal(size=(12, 64)), np.arange(12) % 10])
    header = ",".join([*(f"pixel{i}" for i in range(64)), "label"])
    np.savetxt(tmp_path / "mine.csv", rows, delimiter=",", header=header, comments="")
    data = read_data_file(tmp_path / "mine.csv", "digits")
    assert data.x.shape == (12, 8, 8, 1)
    assert data.y.tolist() == (np.arange(12) % 10).tolist()


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (None, "missing.npz", "no such file"),
        (b"a,b\n1,2\n", "nolabel.csv", "no 'label' column"),
        (b"x", "data.json", "allowed a .npz, .csv or .parquet"),
    ],
)
def test_bad_data_files_name_the_problem(tmp_path, content, name, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_data_file(path, "digits")


def test_wrong_shapes_and_labels_are_refused(tmp_path):
    np.savez(tmp_path / "shape.npz", x=np.zeros((5, 7)), y=np.zeros(5))
    with pytest.raises(ValueError, match="do not fit task 'digits'"):
        read_data_file(tmp_path / "shape.npz", "digits")
    np.savez(tmp_path / "labels.npz", x=np.zeros((5, 30)), y=np.full(5, 3))
    with pytest.raises(ValueError, match=r"labels must be integers 0\.\.1"):
        read_data_file(tmp_path / "labels.npz", "breast_cancer")


def test_node_files_of_a_federation_must_agree_and_the_one_that_differs_is_named(tmp_path):
    import pandas as pd

    from fl_app.ml.checks import DataError
    from fl_app.ml.node_files import check_node_files

    rng = np.random.default_rng(0)
    frames = [pd.DataFrame(rng.normal(size=(20, 30)), columns=[f"f{i}" for i in range(30)])
              for _ in range(3)]  # fmt: skip
    for frame in frames:
        frame["label"] = rng.integers(0, 2, size=20)
    paths = [tmp_path / f"site_{i}.parquet" for i in range(3)]
    for frame, path in zip(frames, paths, strict=True):
        frame.to_parquet(path)
    assert check_node_files(paths, "breast_cancer") == [20, 20, 20]
    frames[2].rename(columns={"f3": "f3_renamed"}).to_parquet(paths[2])
    with pytest.raises(DataError, match=r"site_2\.parquet differs from .*site_0\.parquet"):
        check_node_files(paths, "breast_cancer")
    frames[1].assign(extra=1.0).to_parquet(paths[1])  # one column more
    with pytest.raises(DataError, match=r"site_1\.parquet"):
        check_node_files(paths, "breast_cancer")
