"""The task config as the ML layer names it: its data (`DataSpec`) and `Objective`."""

from __future__ import annotations

import json
from pathlib import Path

from fl_app.config.errors import ConfigError, require
from fl_app.config.schema import AppConfig, PartitionConfig, TaskConfig, plain
from fl_app.crypto.presets import get_preset
from fl_app.ml.objective import Objective
from fl_app.ml.scaling import FEDERATED
from fl_app.ml.sources import BUNDLED, PUBLISHED, PUBLISHED_STATS, DataSpec


def data_spec(
    task: TaskConfig, partition: PartitionConfig | None = None, *, federated: bool = False
) -> DataSpec:
    """The task's data, as the ML layer names it; under partition=natural without
    partition.keep_column, the partition's column is not a default input column;
    `federated`: standardised with federated statistics (`federated_statistics`)."""
    bundled = BUNDLED.get(task.source)
    args = plain(task.source_args)
    if partition is not None and partition.name == "natural" and not partition.keep_column:
        args = {**args, "exclude": [partition.by]}
    return DataSpec(
        source=task.source,
        args=json.dumps(args, sort_keys=True),
        preprocess=task.preprocess,
        stats=FEDERATED if federated else public_statistics(task),
        classification=task.objective.type == "classification",
        feature_shape=bundled.feature_shape if bundled else None,
        num_classes=bundled.num_classes if bundled else None,
    )


def federated_statistics(cfg: AppConfig) -> bool:
    """Whether the holders standardise with federated statistics: `standardize` without
    public statistics, without DP (the sums are not noised), under a mode that can sum
    them (none; he with a BFV preset). Otherwise each holder's own, as before."""
    task = cfg.task
    if task.preprocess != "standardize" or public_statistics(task) or cfg.dp.enabled:
        return False
    if cfg.privacy.name == "he":
        return get_preset(cfg.he.preset).scheme == "bfv"
    return cfg.privacy.name == "none"


def public_statistics(task: TaskConfig) -> str:
    """task.preprocess_stats as canonical JSON ("" when none are given): inline, from a
    .json file, or a bundled source's published ones."""
    key = "task.preprocess_stats"
    given = task.preprocess_stats
    if given is None or given == "":
        return ""
    if given == PUBLISHED:
        require(
            task.source in PUBLISHED_STATS, key, given,
            f"'{PUBLISHED}' only for the bundled sources {sorted(PUBLISHED_STATS)}",
        )  # fmt: skip
        return json.dumps(PUBLISHED_STATS[task.source], sort_keys=True)
    if isinstance(given, str):
        path = Path(given).expanduser()
        require(path.is_file(), key, given, f"'{PUBLISHED}', the statistics inline, or a "
                ".json file of {mean: [...], std: [...]}")  # fmt: skip
        try:
            return json.dumps(json.loads(path.read_text()), sort_keys=True)
        except ValueError as err:
            raise ConfigError(f"{key}={given!r} is invalid: not JSON ({err})") from err
    return json.dumps(plain(given), sort_keys=True)


def objective(task: TaskConfig) -> Objective:
    goal = task.objective
    return Objective(goal.loss, tuple(goal.metrics), goal.primary, goal.higher_is_better)
