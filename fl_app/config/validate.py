"""Checks of a composed config that fail before any training, naming key and allowed value."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from omegaconf import DictConfig

from fl_app.config.errors import require
from fl_app.config.modes import mode_of
from fl_app.crypto.presets import PRESETS
from fl_app.ml.sources import BUNDLED, PREPROCESSING

# fl_app.ml.models.BUILTIN_MODELS (tests keep the two equal; config imports no Keras)
MODELS = ("cnn", "mlp", "wide_mlp", "seed_mlp")
OBJECTIVES = ("classification", "regression")
PARTITIONS = ("iid", "dirichlet")
OPTIMIZERS = ("sgd", "adam")


def validate(cfg: DictConfig) -> None:
    """Fail before any training on values that cannot work together."""
    require(cfg.num_rounds >= 1, "num_rounds", cfg.num_rounds, "an integer >= 1")
    for check in (_task, _train, _partition, _strategy, *mode_of(cfg).checks, _he, _fault, _dp):
        check(cfg)
    _federation(cfg)
    require(
        not cfg.resume or bool(cfg.output_dir),
        "resume",
        cfg.resume,
        "true only with output-dir set to the run directory to resume",
    )


def _task(cfg: DictConfig) -> None:
    task = cfg.task
    require(bool(task.name), "task.name", task.name, "a non-empty name")
    _importable("task.model", task.model, MODELS, ".keras")
    shape = BUNDLED[task.source].feature_shape if task.source in BUNDLED else None
    require(
        task.model != "cnn" or shape is None or len(shape) == 3,
        "task.model",
        task.model,
        "'cnn' only with task=digits or other image data; use 'mlp'",
    )
    _importable("task.source", task.source, tuple(BUNDLED))
    require(
        task.preprocess in PREPROCESSING,
        "task.preprocess",
        task.preprocess,
        f"one of {PREPROCESSING}",
    )
    objective = task.objective
    require(
        objective.type in OBJECTIVES, "task.objective.type", objective.type, f"one of {OBJECTIVES}"
    )
    allowed = ("loss", *objective.metrics)
    require(
        objective.primary in allowed,
        "task.objective.primary",
        objective.primary,
        f"one of {allowed}",
    )
    for key in ("server_test_fraction", "client_test_fraction"):
        require(0.0 < task[key] < 1.0, f"task.{key}", task[key], "a number in (0, 1)")


def _importable(key: str, value: str, names: tuple[str, ...], suffix: str = "") -> None:
    """`value` is one of `names`, a file ending in `suffix`, or an importable callable path."""
    if value in names or (suffix and value.endswith(suffix)):
        if suffix and value.endswith(suffix):
            require(Path(value).expanduser().is_file(), key, value, f"an existing {suffix} file")
        return
    module, sep, attr = value.partition(":")
    if not sep:
        module, _, attr = value.rpartition(".")
    allowed = f"one of {names}" + (f", a {suffix} file" if suffix else "")
    allowed += " or the import path of a callable (package.module.function)"
    require(bool(module and attr) and _module_exists(module), key, value, allowed)


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that does not exist
        return False


def _train(cfg: DictConfig) -> None:
    train = cfg.train
    require(train.local_epochs >= 1, "train.local_epochs", train.local_epochs, ">= 1")
    require(train.batch_size >= 1, "train.batch_size", train.batch_size, ">= 1")
    require(train.learning_rate > 0, "train.learning_rate", train.learning_rate, "> 0")
    require(
        train.optimizer in OPTIMIZERS, "train.optimizer", train.optimizer, f"one of {OPTIMIZERS}"
    )


def _partition(cfg: DictConfig) -> None:
    part = cfg.partition
    require(part.name in PARTITIONS, "partition.name", part.name, f"one of {PARTITIONS}")
    require(part.alpha > 0, "partition.alpha", part.alpha, "a number > 0")
    require(
        part.name != "dirichlet" or cfg.task.objective.type == "classification",
        "partition.name",
        part.name,
        "'dirichlet' only for classification tasks (it splits by label); use 'iid'",
    )
    require(
        part.min_partition_size >= 2,
        "partition.min_partition_size",
        part.min_partition_size,
        ">= 2 (each partition is split into train and test)",
    )


def _strategy(cfg: DictConfig) -> None:
    strat = cfg.strategy
    for key in ("fraction_fit", "fraction_evaluate"):
        require(0.0 <= strat[key] <= 1.0, f"strategy.{key}", strat[key], "a number in [0, 1]")
    require(strat.fraction_fit > 0, "strategy.fraction_fit", strat.fraction_fit, "> 0")


def _he(cfg: DictConfig) -> None:
    presets = tuple(sorted(PRESETS))
    require(cfg.he.preset in presets, "he.preset", cfg.he.preset, f"one of {presets}")
    require(
        1 <= cfg.he.max_examples <= 10**9, "he.max_examples", cfg.he.max_examples, "1..1000000000"
    )


def _fault(cfg: DictConfig) -> None:
    fault = cfg.fault
    for key in ("fail_fraction", "corrupt_fraction"):
        require(0.0 <= fault[key] <= 1.0, f"fault.{key}", fault[key], "a number in [0, 1]")
    require(
        fault.fail_fraction + fault.corrupt_fraction <= 1.0,
        "fault.corrupt_fraction",
        fault.corrupt_fraction,
        f"at most 1 - fault.fail_fraction ({1 - fault.fail_fraction:g})",
    )


def _dp(cfg: DictConfig) -> None:
    dp = cfg.dp
    require(dp.clip_norm > 0, "dp.clip_norm", dp.clip_norm, "a number > 0")
    require(dp.noise_multiplier >= 0, "dp.noise_multiplier", dp.noise_multiplier, ">= 0")
    require(0 < dp.delta < 1, "dp.delta", dp.delta, "a number in (0, 1)")


def _federation(cfg: DictConfig) -> None:
    fed, strat = cfg.federation, cfg.strategy
    require(fed.num_supernodes >= 1, "federation.num_supernodes", fed.num_supernodes, ">= 1")
    for key in ("min_fit_clients", "min_evaluate_clients", "min_available_clients"):
        require(
            1 <= strat[key] <= fed.num_supernodes,
            f"strategy.{key}",
            strat[key],
            f"1..{fed.num_supernodes} (federation.num_supernodes)",
        )
    require(
        strat.min_fit_clients <= strat.min_available_clients,
        "strategy.min_fit_clients",
        strat.min_fit_clients,
        f"<= strategy.min_available_clients ({strat.min_available_clients})",
    )
