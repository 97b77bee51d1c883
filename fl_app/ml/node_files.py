"""Per-node data files: what each SuperNode of a deployment holds (NPZ, CSV, Parquet)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from fl_app.ml.checks import DataError, checked
from fl_app.ml.columns import COLUMN_SOURCES, TABLE, column_names
from fl_app.ml.data import (
    ClientData,
    PartitionSpec,
    Split,
    pool_and_server_test,
    pool_partitions,
    preprocess,
)
from fl_app.ml.features import Features, describe, is_text
from fl_app.ml.sources import DataSpec, table

# Sources whose column names a node's CSV or Parquet file keeps (their source_args).

LABEL_COLUMN = "label"  # the target column of a node's table file for any other source

NAMED_PREFIX = "x:"  # NPZ arrays of named inputs: `x:<input name>`, beside `y`

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
        part = pool.take(rows)
        if file_format == "npz":
            np.savez(path, **_npz_arrays(part))
        else:
            _write_table(path, part, data)
        paths.append(path)
    return paths


def _npz_arrays(part: Split) -> dict[str, np.ndarray]:
    if isinstance(part.x, dict):  # text as fixed-width unicode: NPZ holds no objects
        named = {NAMED_PREFIX + k: v.astype(str) if is_text(v) else v for k, v in part.x.items()}
        return {**named, "y": part.y}
    return {"x": part.x, "y": part.y}


def _write_table(path: Path, part: Split, data: DataSpec) -> None:
    """CSV or Parquet with the columns `read_data_file` expects for `data`."""
    import pandas as pd  # only for table files

    target, features, inputs = _columns(data)
    if isinstance(part.x, dict):
        if not inputs:
            raise ValueError(
                f"format={path.suffix[1:]!r}: source {data.source!r} names no columns for its "
                "named inputs; allowed format=npz (or a table source with `inputs`)"
            )
        columns: dict[str, np.ndarray] = {}
        for name, spec in inputs.items():
            array = part.x[name]
            columns.update(
                {spec: array} if isinstance(spec, str) else dict(zip(spec, array.T, strict=True))
            )
        frame = pd.DataFrame(columns)
    else:
        flat = part.x.reshape(len(part.x), -1)
        if not features and data.source in COLUMN_SOURCES:  # every column but the target
            dropped = {target, *data.kwargs.get("exclude", [])}  # partition=natural's column
            features = [c for c in column_names(data.source, data.kwargs) if c not in dropped]
        names = list(features) if features else [f"f{i}" for i in range(flat.shape[1])]
        frame = pd.DataFrame(flat, columns=names)
    frame[target] = part.y
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, float_format="%.8g")


def _columns(data: DataSpec) -> tuple[str, list[str] | None, dict | None]:
    """The target, feature and named-input columns of `data`'s table files: a table or
    Hugging Face source's own, else a `label` column and every other as a feature."""
    args = data.kwargs if data.source in COLUMN_SOURCES else {}
    features, inputs = args.get("features"), args.get("inputs")
    return str(args.get("target", LABEL_COLUMN)), list(features or []) or None, inputs or None


def read_data_file(path: Path, data: DataSpec | str) -> Split:
    """Model inputs and targets from a node's NPZ (`x`, or named `x:<input>` arrays, and
    `y`), CSV or Parquet file (the columns of `_columns`), checked like every source's
    and against the task's example shape and label range; DataError naming the file."""
    data = DataSpec.of(data)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data-path={str(path)!r} is invalid: no such file")
    if path.suffix == ".npz":
        x, y = _read_npz(path)
    elif path.suffix in (".csv", ".parquet"):
        x, y = table(str(path), *_columns(data))
    else:
        raise DataError(
            f"data-path={str(path)!r} is invalid: allowed a .npz, .csv or .parquet file"
        )
    x, y = checked(str(path), x, y, classification=data.classification)
    if isinstance(x, np.ndarray):
        shape = data.feature_shape or tuple(x.shape[1:])
        if x.size != len(x) * int(np.prod(shape)):
            raise DataError(
                f"{path}: rows of {x.shape[1:]} values do not fit task {data.source!r} "
                f"(needs {shape})"
            )
        x = x.reshape(len(x), *shape).astype(np.float32)
    classes = data.num_classes
    if data.classification and classes is not None and y.max(initial=0) >= classes:
        raise DataError(f"{path}: labels must be integers 0..{classes - 1}, one per row")
    return Split(x, y)


def _read_npz(path: Path) -> tuple[Features, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            files = list(npz.files)
            named = {k[len(NAMED_PREFIX) :]: npz[k] for k in files if k.startswith(NAMED_PREFIX)}
            if "y" not in files or ("x" not in files and not named):
                raise DataError(
                    f"{path} must hold arrays 'x' (or named inputs 'x:<name>') and 'y', "
                    f"found {files}"
                )
            return (npz["x"] if "x" in files else named), npz["y"]
    except DataError:
        raise
    except Exception as err:  # not a zip, truncated, pickled objects, bad CRC, ...
        raise DataError(
            f"{path} is not a readable NPZ archive of numeric arrays: {type(err).__name__}"
        ) from err


def load_node_data(
    path: Path, data: DataSpec | str, *, client_test_fraction: float, seed: int
) -> ClientData:
    """A SuperNode's own data file, split into local train and test sets."""
    rows = read_data_file(path, data)
    if len(rows) < 2:
        raise DataError(f"{path} has {len(rows)} rows; at least 2 are needed")
    train_rows, test_rows = train_test_split(
        np.arange(len(rows)), test_size=client_test_fraction, random_state=seed
    )
    train, test = preprocess(data, rows.take(train_rows), rows.take(test_rows))
    return ClientData(train=train, test=test)


def check_node_files(paths: list[Path], data: DataSpec | str) -> list[int]:
    """Check a federation's own node files before anything starts: each one readable as
    the task's data, all with the same columns (table files) and the same example shapes
    and dtypes as the first; DataError naming the file that differs. Rows per file."""
    data = DataSpec.of(data)
    if not paths:
        raise DataError("no node files given: allowed one .npz, .csv or .parquet per node")
    first, rows = None, []
    for path in paths:
        split = read_data_file(path, data)
        columns = column_names(TABLE, {"path": str(path)}) if path.suffix != ".npz" else []
        form = (path.suffix == ".npz", columns, describe(split.x), str(split.y.dtype))
        if first is None:
            first = (path, form)
        elif form != first[1]:
            raise DataError(
                f"{path} differs from {first[0]}: columns {columns or '(npz)'}, examples "
                f"{form[2]}, targets {form[3]} against {first[1][1] or '(npz)'}, "
                f"{first[1][2]}, {first[1][3]}: every node's file needs the same columns "
                "and dtypes"
            )
        rows.append(len(split))
    return rows
