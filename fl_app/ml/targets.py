"""Classification targets: integer labels everywhere in the pipeline (stratified splits,
Dirichlet partitions, node files), one-hot only where a one-hot loss needs them."""

from __future__ import annotations

import numpy as np

# Keras losses that take one-hot targets; every other classification loss takes labels.
ONE_HOT_LOSSES = ("categorical_crossentropy", "categorical_focal_crossentropy", "categorical_hinge")


def one_hot(labels: np.ndarray, classes: int) -> np.ndarray:
    """Integer labels as float32 one-hot rows of `classes` columns."""
    return np.eye(classes, dtype=np.float32)[labels.reshape(-1)]
