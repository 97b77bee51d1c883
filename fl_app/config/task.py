"""The task config as the ML layer names it: its data (`DataSpec`) and `Objective`."""

from __future__ import annotations

import json

from omegaconf import DictConfig, OmegaConf

from fl_app.ml.objective import Objective
from fl_app.ml.sources import BUNDLED, DataSpec


def data_spec(cfg: DictConfig) -> DataSpec:
    """The task's data, as the ML layer names it."""
    task = cfg.task
    bundled = BUNDLED.get(task.source)
    return DataSpec(
        source=str(task.source),
        args=json.dumps(OmegaConf.to_container(task.source_args, resolve=True), sort_keys=True),
        preprocess=str(task.preprocess),
        classification=task.objective.type == "classification",
        feature_shape=bundled.feature_shape if bundled else None,
        num_classes=bundled.num_classes if bundled else None,
    )


def objective(cfg: DictConfig) -> Objective:
    goal = cfg.task.objective
    return Objective(
        loss=str(goal.loss),
        metrics=tuple(str(m) for m in goal.metrics),
        primary=str(goal.primary),
        higher_is_better=bool(goal.higher_is_better),
    )
