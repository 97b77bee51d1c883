"""What a task optimises and reports (Keras names; no Keras import)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Objective:
    """What a task optimises and reports."""

    loss: str  # a Keras loss name, e.g. sparse_categorical_crossentropy, mse
    metrics: tuple[str, ...]  # Keras metric names, e.g. accuracy, auc, mae, r2_score
    primary: str  # the metric runs are judged by: "loss" or one of `metrics`
    higher_is_better: bool  # direction of `primary`

    def __post_init__(self) -> None:
        if self.primary != "loss" and self.primary not in self.metrics:
            raise ValueError(
                f"primary={self.primary!r} is invalid: allowed 'loss' or one of {self.metrics}"
            )


CLASSIFICATION = Objective("sparse_categorical_crossentropy", ("accuracy",), "accuracy", True)
