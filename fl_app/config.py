"""Hydra configuration: typed schemas, composition from Flower's run config, checks.

`conf/` is the single source of every parameter. Flower's run config carries four
public keys (see pyproject.toml) that are turned into Hydra overrides here, so the
ServerApp, the ClientApp and tests all compose the same way.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fl_app.crypto.presets import PRESETS

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

TASKS = ("digits", "breast_cancer")
MODELS = ("cnn", "mlp", "wide_mlp")
PARTITIONS = ("iid", "dirichlet")
OPTIMIZERS = ("sgd", "adam")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and what is allowed."""


@dataclass
class TaskConfig:
    name: str = MISSING  # dataset: digits | breast_cancer
    model: str = MISSING  # architecture: cnn (digits only) | mlp | wide_mlp (~1M params)
    server_test_fraction: float = 0.2  # share held out for the server's test set
    client_test_fraction: float = 0.2  # share of each partition kept for local eval


@dataclass
class TrainConfig:
    local_epochs: int = 2  # passes over the local data per round
    batch_size: int = 16  # mini-batch size for local training and evaluation
    optimizer: str = "adam"  # sgd | adam
    learning_rate: float = 0.005  # optimizer step size


@dataclass
class PartitionConfig:
    name: str = MISSING  # iid | dirichlet
    alpha: float = 0.5  # Dirichlet concentration, > 0 (dirichlet only)
    min_partition_size: int = 10  # smallest partition Dirichlet sampling accepts
    self_balancing: bool = False  # stop giving a class to clients above average size


@dataclass
class StrategyConfig:
    name: str = MISSING  # config-group choice: fedavg | he | secagg
    fraction_fit: float = 1.0  # share of available clients sampled to train
    fraction_evaluate: float = 1.0  # share sampled for federated evaluation
    min_fit_clients: int = 2  # fewest clients sampled, and fewest results aggregated
    min_evaluate_clients: int = 2  # fewest clients sampled for evaluation
    min_available_clients: int = 2  # nodes that must be connected before a round
    centralized_evaluation: bool = True  # evaluate on the server test set (plaintext)
    secagg_num_shares: float = 3  # secagg: shares per secret (int, or fraction of clients)
    secagg_reconstruction_threshold: float = 2  # secagg: shares needed to reconstruct
    secagg_clipping_range: float = 8.0  # secagg: clip updates to [-range, range]
    secagg_quantization_range: int = 4194304  # secagg: quantisation levels


@dataclass
class HEConfig:
    preset: str = MISSING  # compact | nvflare (fl_app/crypto/presets.py)
    public_context: str = ""  # server: public.ctx; empty in simulation = generate keys
    secret_context: str = ""  # clients: secret.ctx; empty = what the deployment provides
    max_examples: int = 1_000_000  # largest sample count a client may report


@dataclass
class FederationConfig:
    name: str = MISSING  # simulation | deployment
    num_supernodes: int = 10  # SuperNodes: simulated ones, or those expected to connect
    client_num_cpus: int = 1  # CPUs reserved per simulated ClientApp
    client_num_gpus: float = 0.0  # GPU share per simulated ClientApp
    node_wait_timeout: float = 120.0  # seconds the server waits for enough nodes
    connection: str = ""  # deployment: SuperLink connection name in FLWR_HOME/config.toml
    address: str = ""  # deployment: SuperLink address host:port
    root_certificates: str = ""  # deployment: CA certificate that signed the SuperLink's


@dataclass
class FaultConfig:
    fail_fraction: float = 0.0  # share of clients whose fit fails each round (tests/demos)
    corrupt_fraction: float = 0.0  # share whose fit returns a corrupted payload
    seed: int = 0  # shifts which clients are hit in which round


@dataclass
class DPConfig:
    enabled: bool = False  # clip and noise every update on the client, before encryption
    clip_norm: float = 1.0  # L2 bound on a client's update (all layers together)
    noise_multiplier: float = 1.0  # noise std of the round's sum / clip_norm
    delta: float = 1e-5  # the delta at which summary.json reports epsilon


@dataclass
class AppConfig:
    task: TaskConfig = MISSING  # what is learned (group task/)
    strategy: StrategyConfig = MISSING  # how updates are aggregated (group strategy/)
    partition: PartitionConfig = MISSING  # how data is split (group partition/)
    federation: FederationConfig = MISSING  # where it runs (group federation/)
    he: HEConfig = MISSING  # encryption parameters for strategy=he (group he/)
    train: TrainConfig = field(default_factory=TrainConfig)  # local training
    fault: FaultConfig = field(default_factory=FaultConfig)  # fault injection, off
    dp: DPConfig = field(default_factory=DPConfig)  # differential privacy, off
    seed: int = 42  # seeds data splits, model init and local shuffling
    num_rounds: int = 3  # total federated rounds (a resumed run counts done ones)
    output_dir: str = ""  # run directory; empty means <output_root>/<time>_run<id>
    output_root: str = "~/fl_app_outputs"  # parent of default run directories
    resume: bool = False  # continue from <output_dir>/checkpoint.npz
    quiet: bool = False  # fl-experiment: no progress bars, one line per job


ConfigStore.instance().store(name="app_schema", node=AppConfig)

# Run-config key -> the config key it sets. `overrides` is the free-form rest.
RUN_CONFIG_KEYS = {
    "strategy": "strategy",
    "num-server-rounds": "num_rounds",
    "output-dir": "output_dir",
}


def _quote(value: str) -> str:
    """Quote a string for Hydra's override grammar."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def overrides_from_run_config(run_config: Mapping[str, Any]) -> list[str]:
    """Turn Flower's run config into a list of Hydra overrides."""
    overrides = []
    if "strategy" in run_config:
        overrides.append(f"strategy={run_config['strategy']}")
    if "num-server-rounds" in run_config:
        overrides.append(f"num_rounds={run_config['num-server-rounds']}")
    if run_config.get("output-dir"):
        overrides.append(f"output_dir={_quote(str(run_config['output-dir']))}")
    free_form = shlex.split(str(run_config.get("overrides", "")))
    try:
        parsed = OverridesParser.create().parse_overrides(free_form)
    except HydraException as err:
        raise ConfigError(f"run config 'overrides' could not be parsed: {err}") from err
    for override in parsed:
        key = override.key_or_group
        for rc_key, cfg_key in RUN_CONFIG_KEYS.items():
            if key == cfg_key:
                raise ConfigError(
                    f"run config 'overrides' sets '{key}'; use the run-config key "
                    f"'{rc_key}' instead"
                )
    return overrides + free_form


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """Compose conf/config.yaml with Hydra overrides, then validate it."""
    overrides = list(overrides or [])
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"invalid configuration {overrides}: {err}") from err
    validate(cfg)
    return cfg


def load_config(run_config: Mapping[str, Any]) -> DictConfig:
    """Compose the configuration a Flower run asks for."""
    return compose_config(overrides_from_run_config(run_config))


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: allowed {allowed}")


def validate(cfg: DictConfig) -> None:
    """Fail before any training on values that cannot work together."""
    _require(cfg.num_rounds >= 1, "num_rounds", cfg.num_rounds, "an integer >= 1")
    _require(cfg.task.name in TASKS, "task.name", cfg.task.name, f"one of {TASKS}")
    _require(cfg.task.model in MODELS, "task.model", cfg.task.model, f"one of {MODELS}")
    _require(
        cfg.task.model != "cnn" or cfg.task.name == "digits",
        "task.model",
        cfg.task.model,
        "'cnn' only with task=digits (image data); use 'mlp'",
    )
    for key in ("server_test_fraction", "client_test_fraction"):
        value = cfg.task[key]
        _require(0.0 < value < 1.0, f"task.{key}", value, "a number in (0, 1)")

    train = cfg.train
    _require(train.local_epochs >= 1, "train.local_epochs", train.local_epochs, ">= 1")
    _require(train.batch_size >= 1, "train.batch_size", train.batch_size, ">= 1")
    _require(train.learning_rate > 0, "train.learning_rate", train.learning_rate, "> 0")
    _require(
        train.optimizer in OPTIMIZERS,
        "train.optimizer",
        train.optimizer,
        f"one of {OPTIMIZERS}",
    )

    part = cfg.partition
    _require(part.name in PARTITIONS, "partition.name", part.name, f"one of {PARTITIONS}")
    _require(part.alpha > 0, "partition.alpha", part.alpha, "a number > 0")
    _require(
        part.min_partition_size >= 2,
        "partition.min_partition_size",
        part.min_partition_size,
        ">= 2 (each partition is split into train and test)",
    )

    strat = cfg.strategy
    for key in ("fraction_fit", "fraction_evaluate"):
        value = strat[key]
        _require(0.0 <= value <= 1.0, f"strategy.{key}", value, "a number in [0, 1]")
    _require(strat.fraction_fit > 0, "strategy.fraction_fit", strat.fraction_fit, "> 0")

    if strat.name == "he":
        _require(
            not strat.centralized_evaluation,
            "strategy.centralized_evaluation",
            strat.centralized_evaluation,
            "false with strategy=he (the server never holds plaintext weights)",
        )
    if strat.name == "secagg":
        _require(
            strat.secagg_reconstruction_threshold <= strat.min_fit_clients,
            "strategy.secagg_reconstruction_threshold",
            strat.secagg_reconstruction_threshold,
            f"<= strategy.min_fit_clients ({strat.min_fit_clients})",
        )
        _require(
            strat.secagg_clipping_range > 0,
            "strategy.secagg_clipping_range",
            strat.secagg_clipping_range,
            "> 0",
        )
    presets = tuple(sorted(PRESETS))
    _require(cfg.he.preset in presets, "he.preset", cfg.he.preset, f"one of {presets}")
    _require(
        1 <= cfg.he.max_examples <= 10**9,
        "he.max_examples",
        cfg.he.max_examples,
        "1..1000000000",
    )

    for key in ("fail_fraction", "corrupt_fraction"):
        value = cfg.fault[key]
        _require(0.0 <= value <= 1.0, f"fault.{key}", value, "a number in [0, 1]")
    total = cfg.fault.fail_fraction + cfg.fault.corrupt_fraction
    _require(total <= 1.0, "fault.corrupt_fraction", cfg.fault.corrupt_fraction,
             f"at most 1 - fault.fail_fraction ({1 - cfg.fault.fail_fraction:g})")  # fmt: skip

    dp = cfg.dp
    _require(dp.clip_norm > 0, "dp.clip_norm", dp.clip_norm, "a number > 0")
    _require(dp.noise_multiplier >= 0, "dp.noise_multiplier", dp.noise_multiplier, ">= 0")
    _require(0 < dp.delta < 1, "dp.delta", dp.delta, "a number in (0, 1)")

    fed = cfg.federation
    _require(
        fed.num_supernodes >= 1,
        "federation.num_supernodes",
        fed.num_supernodes,
        ">= 1",
    )
    for key in ("min_fit_clients", "min_evaluate_clients", "min_available_clients"):
        value = strat[key]
        _require(
            1 <= value <= fed.num_supernodes,
            f"strategy.{key}",
            value,
            f"1..{fed.num_supernodes} (federation.num_supernodes)",
        )
    _require(
        strat.min_fit_clients <= strat.min_available_clients,
        "strategy.min_fit_clients",
        strat.min_fit_clients,
        f"<= strategy.min_available_clients ({strat.min_available_clients})",
    )
    _require(
        not cfg.resume or bool(cfg.output_dir),
        "resume",
        cfg.resume,
        "true only with output-dir set to the run directory to resume",
    )


def to_yaml(cfg: DictConfig) -> str:
    """Render the resolved configuration."""
    return OmegaConf.to_yaml(cfg, resolve=True)
