"""Classification targets: integer labels everywhere in the pipeline (stratified splits,
Dirichlet partitions, node files), one-hot only where a one-hot loss needs them."""

from __future__ import annotations

import numpy as np

# Keras losses that take one-hot targets; every other classification loss takes labels.
ONE_HOT_LOSSES = ("categorical_crossentropy", "categorical_focal_crossentropy", "categorical_hinge")


def as_labels(source: str, y: np.ndarray) -> np.ndarray:
    """Classification targets as int64 labels: whole numbers >= 0, or one-hot rows (one 1
    per row, turned into its column's index); anything else is refused."""
    if y.ndim == 2 and y.shape[1] > 1:
        if not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
            raise ValueError(
                f"source {source!r}: 2-D classification targets must be one-hot rows "
                "(a single 1 per row)"
            )
        return y.argmax(axis=1).astype(np.int64)
    if y.dtype.kind in "iub" or (
        y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y))
    ):
        labels = y.astype(np.int64)
    else:
        raise ValueError(
            f"source {source!r}: classification targets must be integer labels >= 0, "
            f"got {y.dtype} values (set task.objective.type=regression for values)"
        )
    if labels.min(initial=0) < 0:
        raise ValueError(f"source {source!r}: labels must be integers >= 0")
    return labels


def one_hot(labels: np.ndarray, classes: int) -> np.ndarray:
    """Integer labels as float32 one-hot rows of `classes` columns."""
    return np.eye(classes, dtype=np.float32)[labels.reshape(-1)]
