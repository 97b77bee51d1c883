"""Per-node data files: what each SuperNode of a deployment holds (NPZ or CSV)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from fl_app.ml.data import (
    ClientData,
    PartitionSpec,
    Split,
    pool_and_server_test,
    pool_partitions,
    preprocess,
)
from fl_app.ml.sources import DataSpec, as_labels, table

TABLE_SOURCE = "fl_app.ml.sources.table"

LABEL_COLUMN = "label"  # the target column of a node's CSV data file


FILE_FORMATS = ("npz", "csv", "parquet")


def export_partitions(
    data: DataSpec | str,
    spec: PartitionSpec,
    out_dir: Path,
    *,
    server_test_fraction: float,
    seed: int,
    file_format: str = "npz",
) -> list[Path]:
    """Write one data file per partition: what each SuperNode of a deployment holds."""
    if file_format not in FILE_FORMATS:
        raise ValueError(f"format={file_format!r} is invalid: allowed one of {FILE_FORMATS}")
    data = DataSpec.of(data)
    pool, _ = pool_and_server_test(data, server_test_fraction, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for pid, rows in enumerate(pool_partitions(data, server_test_fraction, spec, seed)):
        path = out_dir / f"partition_{pid}.{file_format}"
        x, y = pool.x[rows], pool.y[rows]
        if file_format == "npz":
            np.savez(path, x=x, y=y)
        else:
            _write_table(path, x.reshape(len(x), -1), y, data)
        paths.append(path)
    return paths


def _write_table(path: Path, flat: np.ndarray, y: np.ndarray, data: DataSpec) -> None:
    """CSV or Parquet with the columns `read_data_file` expects for `data`."""
    import pandas as pd  # only for table files

    target, features = _columns(data)
    names = list(features) if features else [f"f{i}" for i in range(flat.shape[1])]
    frame = pd.DataFrame(flat, columns=names)
    frame[target] = y
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, float_format="%.8g")


def _columns(data: DataSpec) -> tuple[str, list[str] | None]:
    """The target column and feature columns of `data`'s files (a table source's own)."""
    args = data.kwargs if data.source == TABLE_SOURCE else {}
    features = args.get("features")
    return str(args.get("target", LABEL_COLUMN)), list(features) if features else None


def read_data_file(path: Path, data: DataSpec | str) -> Split:
    """Features and targets from a node's NPZ (`x`, `y`), CSV or Parquet file (named
    columns: the table source's `target` and `features`, else a `label` column),
    checked against the task's example shape and label range."""
    data = DataSpec.of(data)
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data-path={str(path)!r} is invalid: no such file")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            if not {"x", "y"} <= set(npz.files):
                raise ValueError(f"{path} must hold arrays 'x' and 'y', found {npz.files}")
            x, y = npz["x"], npz["y"]
    elif path.suffix in (".csv", ".parquet"):
        x, y = table(str(path), *_columns(data))
    else:
        raise ValueError(
            f"data-path={str(path)!r} is invalid: allowed a .npz, .csv or .parquet file"
        )
    shape = data.feature_shape or tuple(x.shape[1:])
    if x.size != len(x) * int(np.prod(shape)):
        raise ValueError(
            f"{path}: rows of {x.shape[1:]} values do not fit task {data.source!r} (needs {shape})"
        )
    if len(y) != len(x):
        raise ValueError(f"{path}: {len(y)} targets for {len(x)} rows, allowed one per row")
    return Split(x.reshape(len(x), *shape).astype(np.float32), _targets(path, y, data))


def _targets(path: Path, y: np.ndarray, data: DataSpec) -> np.ndarray:
    if not data.classification:
        return y.astype(np.float32)
    labels = as_labels(str(path), y)  # whole numbers >= 0, as from every source
    classes = data.num_classes
    if classes is not None and labels.max(initial=0) >= classes:
        raise ValueError(f"{path}: labels must be integers 0..{(classes or 1) - 1}, one per row")
    return labels


def load_node_data(
    path: Path, data: DataSpec | str, *, client_test_fraction: float, seed: int
) -> ClientData:
    """A SuperNode's own data file, split into local train and test sets."""
    rows = read_data_file(path, data)
    if len(rows) < 2:
        raise ValueError(f"{path} has {len(rows)} rows; at least 2 are needed")
    train_rows, test_rows = train_test_split(
        np.arange(len(rows)), test_size=client_test_fraction, random_state=seed
    )
    train, test = preprocess(
        data,
        Split(rows.x[train_rows], rows.y[train_rows]),
        Split(rows.x[test_rows], rows.y[test_rows]),
    )
    return ClientData(train=train, test=test)
