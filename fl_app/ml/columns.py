"""Model inputs and targets picked from named columns: a table file's or a Hugging Face
dataset's, refusing a missing or non-numeric column with its name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from fl_app.ml.checks import DataError
from fl_app.ml.features import Features, gather, is_text

Columns = list[str] | tuple[str, ...] | None
TEXT_HINT = (
    " here (text or categories go to a named model input of dtype 'string' through "
    "source_args.inputs, whose own Hashing, StringLookup or TextVectorization layer encodes "
    "them; or encode the column as numbers yourself)"
)
Inputs = Mapping[str, str | list[str]] | None


def select(
    column: Callable[[str], np.ndarray],
    columns: list[str],
    target: str,
    features: Columns,
    inputs: Inputs,
    *,
    where: str,
    exclude: Columns = None,
) -> tuple[Features, np.ndarray]:
    """The model inputs and targets from named columns (see `table`), refusing a column
    that `where` lacks; `exclude`: columns that are not default features (partition=natural's
    site column, unless partition.keep_column)."""
    if features and inputs:
        raise DataError(f"{where}: give either features or inputs, not both")
    named = [
        c for spec in (inputs or {}).values() for c in ([spec] if isinstance(spec, str) else spec)
    ]
    missing = [name for name in [target, *(features or []), *named] if name not in columns]
    if missing:
        shown = ", ".join(map(str, columns[:8])) + ("..." if len(columns) > 8 else "")
        raise DataError(f"{where} has no {missing[0]!r} column (columns: {shown})")

    def numeric(name: str, text: bool = False) -> np.ndarray:
        values = np.asarray(column(name))
        if text and is_text(values):
            return values  # to a model input of dtype "string"
        if values.dtype.kind not in "biuf":
            raise DataError(
                f"{where}: column {name!r} holds {values.dtype} values; allowed numbers"
                + (TEXT_HINT if is_text(values) or values.dtype.kind == "O" else "")
            )
        return values

    if inputs:
        return gather(lambda name: numeric(name, text=True), inputs), numeric(target)
    dropped = {target, *(exclude or [])}
    features = list(features) if features else [c for c in columns if c not in dropped]
    if not features:
        raise DataError(f"{where} has no feature column besides the target {target!r}")
    x = np.stack([numeric(c).astype(np.float32) for c in features], axis=1)
    return x, numeric(target)


def from_dataset(
    table_: Dataset,
    target: str,
    features: Columns,
    inputs: Inputs,
    *,
    where: str,
    exclude: Columns = None,
) -> tuple[Features, np.ndarray]:
    """The model inputs and targets of a `datasets.Dataset`'s named columns."""
    frame = table_.with_format("numpy")
    return select(
        lambda name: np.asarray(frame[name]), list(table_.column_names), target, features,
        inputs, where=where, exclude=exclude,
    )  # fmt: skip


TABLE, HUGGINGFACE = "fl_app.ml.sources.table", "fl_app.ml.sources.huggingface"
COLUMN_SOURCES = (TABLE, HUGGINGFACE)  # sources whose data has named columns
_NOT_LOAD_ARGS = ("dataset", "target", "features", "inputs", "exclude")


def hf_split(dataset: str, split: str, load_dataset_kwargs: Mapping[str, Any]) -> Dataset:
    """A Hugging Face dataset's `split`: a `save_to_disk` directory, or through
    flwr-datasets' `FederatedDataset` (`load_dataset` keyword arguments)."""
    import datasets  # only for Hugging Face sources

    if (Path(dataset).expanduser() / "dataset_info.json").is_file():
        table_ = datasets.load_from_disk(str(Path(dataset).expanduser()))
        return table_[split] if isinstance(table_, datasets.DatasetDict) else table_
    from flwr_datasets import FederatedDataset

    federated = FederatedDataset(
        dataset=dataset, partitioners={split: 1}, shuffle=False, **load_dataset_kwargs
    )
    return federated.load_split(split)


def _source_table(source: str, args: Mapping[str, Any]) -> Any:
    """A column source's data as a pandas frame (table) or a Dataset (huggingface)."""
    if source == TABLE:
        import pandas as pd

        file = Path(str(args["path"])).expanduser()
        return pd.read_parquet(file) if file.suffix == ".parquet" else pd.read_csv(file)
    rest = {k: v for k, v in args.items() if k not in _NOT_LOAD_ARGS}
    split = rest.pop("split", "train")
    return hf_split(str(args["dataset"]), split, rest)


def column_names(source: str, args: Mapping[str, Any]) -> list[str]:
    """Every column of a `table` or `huggingface` source's data, in order."""
    if source == TABLE and Path(str(args["path"])).suffix != ".parquet":
        import pandas as pd

        return list(pd.read_csv(Path(str(args["path"])).expanduser(), nrows=0).columns)
    data = _source_table(source, args)
    return list(data.columns) if source == TABLE else list(data.column_names)


def column_values(source: str, args: Mapping[str, Any], name: str) -> np.ndarray:
    """One column of a `table` or `huggingface` source's data, row by row (the rows of
    its examples, in order), refusing a missing column or missing values by name."""
    data = _source_table(source, args)
    names = list(data.columns) if source == TABLE else list(data.column_names)
    if name not in names:
        raise DataError(f"source {source!r} has no {name!r} column (columns: {names[:8]})")
    values = np.asarray(data[name])
    if (values.dtype.kind == "f" and np.isnan(values).any()) or any(v is None for v in values):
        raise DataError(f"source {source!r}: column {name!r} has missing values")
    return values
