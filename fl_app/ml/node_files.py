"""Per-node data files: what each SuperNode of a deployment holds (NPZ or CSV)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from fl_app.ml.data import (
    NUM_CLASSES,
    ClientData,
    PartitionSpec,
    Split,
    input_shape,
    pool_and_server_test,
    pool_partitions,
    preprocess,
)

LABEL_COLUMN = "label"  # the label column of a node's CSV data file


def export_partitions(
    task: str,
    spec: PartitionSpec,
    out_dir: Path,
    *,
    server_test_fraction: float,
    seed: int,
    file_format: str = "npz",
) -> list[Path]:
    """Write one data file per partition: what each SuperNode of a deployment holds."""
    if file_format not in ("npz", "csv"):
        raise ValueError(f"format={file_format!r} is invalid: allowed 'npz' or 'csv'")
    pool, _ = pool_and_server_test(task, server_test_fraction, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for pid, rows in enumerate(pool_partitions(task, server_test_fraction, spec, seed)):
        path = out_dir / f"partition_{pid}.{file_format}"
        x, y = pool.x[rows], pool.y[rows]
        if file_format == "npz":
            np.savez(path, x=x, y=y)
        else:
            flat = x.reshape(len(x), -1)
            header = ",".join([*(f"f{i}" for i in range(flat.shape[1])), LABEL_COLUMN])
            np.savetxt(path, np.column_stack([flat, y]), delimiter=",", header=header,
                       comments="", fmt=["%.8g"] * flat.shape[1] + ["%d"])  # fmt: skip
        paths.append(path)
    return paths


def read_data_file(path: Path, task: str) -> Split:
    """Features and labels from a node's NPZ (`x`, `y`) or CSV (a `label` column) file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data-path={str(path)!r} is invalid: no such file")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            if not {"x", "y"} <= set(npz.files):
                raise ValueError(f"{path} must hold arrays 'x' and 'y', found {npz.files}")
            x, y = npz["x"], npz["y"]
    elif path.suffix == ".csv":
        header = path.read_text().splitlines()[0].split(",")
        if LABEL_COLUMN not in header:
            raise ValueError(f"{path} has no '{LABEL_COLUMN}' column (columns: {header[:5]}...)")
        table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
        label = header.index(LABEL_COLUMN)
        x, y = np.delete(table, label, axis=1), table[:, label]
    else:
        raise ValueError(f"data-path={str(path)!r} is invalid: allowed a .npz or .csv file")
    shape = input_shape(task)
    if x.size != len(x) * int(np.prod(shape)):
        raise ValueError(
            f"{path}: rows of {x.shape[1:]} values do not fit task {task!r} (needs {shape})"
        )
    labels = y.astype(np.int64)
    if (
        len(labels) != len(x)
        or labels.min(initial=0) < 0
        or labels.max(initial=0) >= NUM_CLASSES[task]
    ):
        raise ValueError(f"{path}: labels must be integers 0..{NUM_CLASSES[task] - 1}, one per row")
    return Split(x.reshape(len(x), *shape).astype(np.float32), labels)


def load_node_data(path: Path, task: str, *, client_test_fraction: float, seed: int) -> ClientData:
    """A SuperNode's own data file, split into local train and test sets."""
    data = read_data_file(path, task)
    if len(data) < 2:
        raise ValueError(f"{path} has {len(data)} rows; at least 2 are needed")
    train_rows, test_rows = train_test_split(
        np.arange(len(data)), test_size=client_test_fraction, random_state=seed
    )
    train, test = preprocess(
        task,
        Split(data.x[train_rows], data.y[train_rows]),
        Split(data.x[test_rows], data.y[test_rows]),
    )
    return ClientData(train=train, test=test)
