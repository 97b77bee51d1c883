"""What every source and every node's data file must give, checked once, with the file
or source named: the project's own `DataError`, never a numpy or pandas traceback."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from fl_app.ml.features import Features, as_text, is_text, num_rows

FLOAT32_MAX = float(np.finfo(np.float32).max)


class DataError(ValueError):
    """Data that cannot be trained on; the message names its file or source."""


class TaskError(ValueError):
    """A task's model that cannot be built as configured (task.model, task.model_args)."""


def check_builder_arguments(model: str, builder: Callable[..., Any], args: Mapping) -> None:
    """`task.model_args` must fit the model builder's signature: refused naming both,
    not a TypeError from inside it."""
    try:
        signature = inspect.signature(builder)
    except (TypeError, ValueError):  # a builtin without a signature: let the call decide
        return
    try:
        signature.bind(**args)
    except TypeError as err:
        wants = ", ".join(
            name if param.default is param.empty else f"{name}={param.default!r}"
            for name, param in signature.parameters.items()
        )
        raise TaskError(
            f"task.model_args={dict(args)} do not fit task.model={model!r} ({wants}): {err}"
        ) from err


def check_features(where: str, x: Features) -> None:
    """Real numbers, one row per example, at least one row, the same rows in every named
    input; floats finite in float32."""
    arrays = x.items() if isinstance(x, dict) else [("features", x)]
    rows = set()
    for name, array in arrays:
        what = f"{where}: {name}"
        if array.ndim == 0:
            raise DataError(f"{what} is a single value; allowed one row per example")
        if len(array) == 0:
            raise DataError(f"{where} has no rows; allowed at least one example")
        if not is_text(array):  # text goes to a string input (fl_app.ml.features)
            _require_real(what, array)
        rows.add(len(array))
    if len(rows) > 1:
        raise DataError(f"{where}: named inputs have {sorted(rows)} rows; allowed the same")


def check_targets(where: str, y: np.ndarray, rows: int) -> None:
    """One finite target per example (a row of values for a multi-output regression)."""
    if y.ndim == 0 or len(y) != rows:
        count = 0 if y.ndim == 0 else len(y)
        raise DataError(f"{where}: {count} targets for {rows} rows; allowed one per row")
    _require_real(f"{where}: targets", y)


def _require_real(what: str, array: np.ndarray) -> None:
    """Int or float values, floats finite within float32's range."""
    if array.dtype.kind not in "biuf":
        raise DataError(f"{what} are {array.dtype} values; allowed real numbers (int or float)")
    if array.dtype.kind == "f" and not np.all(np.abs(array) <= FLOAT32_MAX):
        raise DataError(
            f"{what} hold NaN, infinite or out-of-range values (|x| > {FLOAT32_MAX:.3g}); "
            "allowed finite float32 numbers"
        )


def _text_as_object(array: np.ndarray) -> np.ndarray:
    return as_text(array) if is_text(array) else array


def as_labels(source: str, y: np.ndarray) -> np.ndarray:
    """Classification targets as int64 labels: whole numbers >= 0, or one-hot rows (one 1
    per row, turned into its column's index); anything else is refused."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.reshape(-1)
    if y.ndim > 2:
        raise DataError(f"{source}: labels of shape {y.shape[1:]}; allowed one label per row")
    if y.ndim == 2:
        if not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
            raise DataError(
                f"{source}: 2-D classification targets must be one-hot rows (a single 1 per row)"
            )
        return y.argmax(axis=1).astype(np.int64)
    if y.dtype.kind in "iub" or (
        y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y))
    ):
        labels = y.astype(np.int64)
    else:
        raise DataError(
            f"{source}: classification targets must be integer labels >= 0, "
            f"got {y.dtype} values (set task.objective.type=regression for values)"
        )
    if labels.min(initial=0) < 0:
        raise DataError(f"{source}: labels must be integers >= 0")
    return labels


def checked(
    where: str, x: Features, y: Any, *, classification: bool
) -> tuple[Features, np.ndarray]:
    """`x` and `y` as arrays that can be trained on, or DataError naming `where`:
    real, finite features with one target per row; integer labels for classification."""
    x = (
        {str(k): _text_as_object(np.asarray(v)) for k, v in x.items()}
        if isinstance(x, Mapping)
        else np.asarray(x)
    )
    check_features(where, x)
    y = np.asarray(y)
    check_targets(where, y, num_rows(x))
    return x, as_labels(where, y) if classification else y.astype(np.float32)


def check_text_inputs(inputs: list[Any], x: Features) -> None:
    """Text only to a model input of dtype "string", and numbers never to one: refused
    before training with the fix (a functional model's `inputs`, matched by name)."""
    arrays = x if isinstance(x, dict) else {t.name: x for t in inputs[:1]}
    for tensor in inputs:
        array = arrays.get(tensor.name)
        if array is None:
            continue
        wants_text, text = "string" in str(tensor.dtype), is_text(np.asarray(array[:1]))
        if text and not wants_text:
            raise ValueError(
                f"task.model input {tensor.name!r} takes {tensor.dtype}; the data's are text: "
                "give it keras.Input(..., dtype='string') and a Hashing, StringLookup or "
                "TextVectorization layer, or encode the column as numbers"
            )
        if wants_text and not text:
            raise ValueError(
                f"task.model input {tensor.name!r} takes strings; the data's are "
                f"{np.asarray(array).dtype} numbers"
            )
