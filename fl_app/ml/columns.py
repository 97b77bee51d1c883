"""Model inputs and targets picked from named columns: a table file's or a Hugging Face
dataset's, refusing a missing or non-numeric column with its name."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from datasets import Dataset

from fl_app.ml.checks import DataError
from fl_app.ml.features import Features, gather

Columns = list[str] | tuple[str, ...] | None
Inputs = Mapping[str, str | list[str]] | None


def select(
    column: Callable[[str], np.ndarray],
    columns: list[str],
    target: str,
    features: Columns,
    inputs: Inputs,
    *,
    where: str,
) -> tuple[Features, np.ndarray]:
    """The model inputs and targets from named columns (see `table`), refusing a column
    that `where` lacks."""
    if features and inputs:
        raise DataError(f"{where}: give either features or inputs, not both")
    named = [
        c for spec in (inputs or {}).values() for c in ([spec] if isinstance(spec, str) else spec)
    ]
    missing = [name for name in [target, *(features or []), *named] if name not in columns]
    if missing:
        shown = ", ".join(map(str, columns[:8])) + ("..." if len(columns) > 8 else "")
        raise DataError(f"{where} has no {missing[0]!r} column (columns: {shown})")

    def numeric(name: str) -> np.ndarray:
        values = np.asarray(column(name))
        if values.dtype.kind not in "biuf":
            raise DataError(
                f"{where}: column {name!r} holds {values.dtype} values; allowed numbers"
            )
        return values

    if inputs:
        return gather(numeric, inputs), numeric(target)
    features = list(features) if features else [c for c in columns if c != target]
    if not features:
        raise DataError(f"{where} has no feature column besides the target {target!r}")
    x = np.stack([numeric(c).astype(np.float32) for c in features], axis=1)
    return x, numeric(target)


def from_dataset(
    table_: Dataset, target: str, features: Columns, inputs: Inputs, *, where: str
) -> tuple[Features, np.ndarray]:
    """The model inputs and targets of a `datasets.Dataset`'s named columns."""
    frame = table_.with_format("numpy")
    return select(
        lambda name: np.asarray(frame[name]), list(table_.column_names), target, features,
        inputs, where=where,
    )  # fmt: skip
