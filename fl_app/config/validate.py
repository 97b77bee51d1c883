"""Checks of a composed config that fail before any training, naming key and allowed value."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from omegaconf import DictConfig

from fl_app.config.errors import ConfigError, require
from fl_app.config.modes import evaluates_centrally, mode_of
from fl_app.config.ranges import check_schema
from fl_app.config.schema import AppConfig, SweepConfig
from fl_app.config.task import public_statistics
from fl_app.crypto.presets import PRESETS
from fl_app.ml.scaling import PREPROCESSING, statistics_source
from fl_app.ml.sources import BUNDLED

# fl_app.ml.models.BUILTIN_MODELS (tests keep the two equal; config imports no Keras)
MODELS = ("cnn", "mlp", "wide_mlp", "regression_mlp", "seed_mlp")  # seed_mlp: the old name
OBJECTIVES = ("classification", "regression")
PARTITIONS = ("iid", "dirichlet", "natural")
COLUMN_SOURCES = ("fl_app.ml.sources.table", "fl_app.ml.sources.huggingface")
DP_LEVELS = ("client", "record")
OPTIMIZERS = ("sgd", "adam")
LOG_LEVELS = ("debug", "info", "warning")  # fl_app.quiet.LEVELS (tests keep them equal)
# fl_app.fl.hostile.HOSTILE_CASES (tests keep the two equal; config imports no Flower)
HOSTILE_CASES = (
    "count", "dp_report", "eval_count", "extra_arrays", "garbage", "missing_arrays", "nan",
    "nested_header", "other_key", "overflow_header", "public_key_upload", "replay",
)  # fmt: skip


def validate(cfg: DictConfig) -> None:
    """Fail before any training on a key the schema lacks, a number outside its declared
    range (both from the schema, for every field), and values that cannot work together."""
    check_schema(cfg, SweepConfig if "quiet" in cfg else AppConfig)
    checks = (_task, _server_test, _train, _strategy, _partition, *mode_of(cfg).checks)
    for check in (*checks, _he, _fault, _dp):
        check(cfg)
    _federation(cfg)
    require(cfg.log_level in LOG_LEVELS, "log_level", cfg.log_level, f"one of {LOG_LEVELS}")
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
    public_statistics(task)  # a file that does not exist or is not JSON: refused now
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


def _importable(key: str, value: str, names: tuple[str, ...], suffix: str = "") -> None:
    """`value` is one of `names`, a file ending in `suffix`, or an importable callable path."""
    if value in names or (suffix and value.endswith(suffix)):
        if suffix and value.endswith(suffix):
            require(Path(value).expanduser().is_file(), key, value, f"an existing {suffix} file")
        return
    module, sep, attr = value.partition(":")
    if not sep:
        module, _, attr = value.rpartition(".")
    given = [f"one of {names}"] if names else []
    given += [f"a {suffix} file"] if suffix else []
    allowed = ", ".join([*given, "the import path of a callable (package.module.Name)"])
    require(bool(module and attr) and _module_exists(module), key, value, allowed)


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that does not exist
        return False


def _train(cfg: DictConfig) -> None:
    train = cfg.train
    require(
        train.optimizer in OPTIMIZERS, "train.optimizer", train.optimizer, f"one of {OPTIMIZERS}"
    )


def _strategy(cfg: DictConfig) -> None:
    target = cfg.strategy.algorithm.get("_target_", "")
    _importable("strategy.algorithm._target_", target, ())


def _server_test(cfg: DictConfig) -> None:
    share = cfg.task.server_test_fraction
    require(
        share != 0 or not evaluates_centrally(cfg), "task.server_test_fraction", share,
        "> 0 while the server evaluates centrally (strategy.centralized_evaluation)",
    )  # fmt: skip


def _partition(cfg: DictConfig) -> None:
    part = cfg.partition
    require(part.name in PARTITIONS, "partition.name", part.name, f"one of {PARTITIONS}")
    require(
        part.name != "dirichlet" or cfg.task.objective.type == "classification",
        "partition.name",
        part.name,
        "'dirichlet' only for classification tasks (it splits by label); use 'iid'",
    )
    if part.name == "natural":
        require(part.by != "", "partition.by", part.by, "the column whose values name the sites")
        require(
            cfg.task.source in COLUMN_SOURCES, "task.source", cfg.task.source,
            f"one of {COLUMN_SOURCES} with partition=natural (it reads a column)",
        )  # fmt: skip


def _he(cfg: DictConfig) -> None:
    presets = tuple(sorted(PRESETS))
    require(cfg.he.preset in presets, "he.preset", cfg.he.preset, f"one of {presets}")


def _dp(cfg: DictConfig) -> None:
    dp = cfg.dp
    require(dp.level in DP_LEVELS, "dp.level", dp.level, f"one of {DP_LEVELS}")
    task = cfg.task
    source = statistics_source(str(task.preprocess), bool(public_statistics(task)))
    if dp.enabled and dp.level == "record" and source == "holder":
        raise ConfigError(
            f"task.preprocess={task.preprocess!r} without task.preprocess_stats is invalid "
            "under dp.level=record: each holder would scale its data with its own mean and "
            "std, so removing one record rescales every other and the ε reported would bound "
            "nothing. Allowed: public statistics in task.preprocess_stats ({mean: [...], "
            "std: [...]} inline, a .json file of them, or 'published' for a bundled source), "
            "or task.preprocess=none"
        )
    for key in ("target_epsilon", "max_epsilon"):
        require(
            dp[key] == 0 or dp.level == "record",
            f"dp.{key}",
            dp[key],
            "0 unless dp.level=record (it is a per-holder budget of DP-SGD)",
        )


def _fault(cfg: DictConfig) -> None:
    fault = cfg.fault
    for case in fault.hostile:
        require(case in HOSTILE_CASES, "fault.hostile", case, f"one of {sorted(HOSTILE_CASES)}")
    require(
        fault.fail_fraction + fault.corrupt_fraction <= 1.0,
        "fault.corrupt_fraction",
        fault.corrupt_fraction,
        f"at most 1 - fault.fail_fraction ({1 - fault.fail_fraction:g})",
    )


def _federation(cfg: DictConfig) -> None:
    fed, strat = cfg.federation, cfg.strategy
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
    require(
        fed.poll_interval <= fed.poll_max_interval,
        "federation.poll_interval",
        fed.poll_interval,
        f"<= federation.poll_max_interval ({fed.poll_max_interval:g})",
    )
