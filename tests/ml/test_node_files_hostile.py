"""Issue 12, data files: whatever a node's file holds, loading it gives arrays that can be
trained on or the project's own DataError naming the file, never another exception."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays, floating_dtypes, integer_dtypes

from fl_app.ml.checks import DataError
from fl_app.ml.node_files import load_node_data, read_data_file
from fl_app.ml.sources import DataSpec

ANY_SHAPE = DataSpec("a.user.source", classification=True)  # no example shape imposed
REGRESSION = DataSpec("a.user.source", classification=False)


def npz(path, **arrays_) -> str:
    np.savez(path, **arrays_)
    return str(path)


def write(path, content: str | bytes) -> str:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)


CASES = {
    "nan": lambda d: npz(d / "f.npz", x=np.array([[1.0], [np.nan]]), y=np.array([0, 1])),
    "inf": lambda d: npz(d / "f.npz", x=np.array([[1.0], [-np.inf]]), y=np.array([0, 1])),
    "absurd": lambda d: npz(d / "f.npz", x=np.array([[1.0], [1e40]]), y=np.array([0, 1])),
    "complex": lambda d: npz(d / "f.npz", x=np.array([[1 + 2j], [0j]]), y=np.array([0, 1])),
    "fraction_labels": lambda d: npz(d / "f.npz", x=np.ones((2, 1)), y=np.array([0.5, 1.0])),
    "2d_labels": lambda d: npz(d / "f.npz", x=np.ones((2, 1)), y=np.array([[0, 2], [1, 1]])),
    "0d": lambda d: npz(d / "f.npz", x=np.array(3.0), y=np.array(1)),
    "no_rows": lambda d: npz(d / "f.npz", x=np.ones((0, 2)), y=np.ones(0, np.int64)),
    "count": lambda d: npz(d / "f.npz", x=np.ones((3, 2)), y=np.array([0, 1])),
    "not_npz": lambda d: write(d / "f.npz", "hello"),
    "empty_csv": lambda d: write(d / "f.csv", ""),
    "header_only_csv": lambda d: write(d / "f.csv", "a,b,label\n"),
    "text_column": lambda d: write(d / "f.csv", "a,label\nx,0\ny,1\n"),
    "only_target": lambda d: write(d / "f.csv", "label\n0\n1\n"),
    "bad_parquet": lambda d: write(d / "f.parquet", b"PAR1junk"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_data_file_is_refused_with_its_path(tmp_path, case):
    path = CASES[case](tmp_path)
    with pytest.raises(DataError) as refused:
        read_data_file(path, ANY_SHAPE)
    assert str(path) in str(refused.value)


def test_regression_targets_must_be_finite_too(tmp_path):
    path = npz(tmp_path / "r.npz", x=np.ones((2, 1)), y=np.array([1.0, np.nan]))
    with pytest.raises(DataError, match="targets hold NaN"):
        read_data_file(path, REGRESSION)


def valid(split) -> None:
    x = split.x
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and np.isfinite(x).all()
    assert split.y.ndim == 1 and len(split.y) == len(x) > 0
    assert split.y.dtype == np.int64 and split.y.min() >= 0


VALUES = arrays(
    dtype=st.one_of(
        floating_dtypes(sizes=(32, 64), endianness="="),
        integer_dtypes(sizes=(8, 64), endianness="="),
    ),
    shape=st.tuples(st.integers(0, 6), st.integers(1, 4)),
    elements={"allow_subnormal": False},
)
LABELS = arrays(
    dtype=st.sampled_from([np.int64, np.float64, np.int8]),
    shape=st.one_of(st.tuples(st.integers(0, 6)), st.tuples(st.integers(0, 6), st.integers(1, 3))),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(x=VALUES, y=LABELS, kind=st.sampled_from(["npz", "csv", "parquet"]))
def test_any_generated_file_loads_valid_or_raises_data_error_naming_it(tmp_path, x, y, kind):
    path = tmp_path / f"node.{kind}"
    if kind == "npz":
        np.savez(path, x=x, y=y)
    else:
        frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
        if y.ndim == 1 and len(y) == len(x):
            frame["label"] = y
        if kind == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
    try:
        split = read_data_file(path, ANY_SHAPE)
    except DataError as err:
        assert str(path) in str(err)
        return
    valid(split)
    try:
        node = load_node_data(path, ANY_SHAPE, client_test_fraction=0.5, seed=0)
    except DataError as err:  # e.g. a single row cannot be split
        assert str(path) in str(err)
        return
    valid(node.train)


def test_a_label_with_one_row_is_named_with_its_source_not_a_raw_stratify_error():
    """Issue 22, item 6: scikit-learn's stratify error named no file and no label."""
    from fl_app.ml.data import pool_and_server_test

    spec = DataSpec("fl_app_test_sources.one_of_a_kind")
    with pytest.raises(DataError, match=r"'fl_app_test_sources.one_of_a_kind': label 2 has 1 row"):
        pool_and_server_test(spec, 0.2, 0)
