"""Typed schemas of every parameter, registered in Hydra's ConfigStore.

Each default lives here, once, with its one-line meaning, and every number its allowed
range (`ranged`: fl_app/config/ranges.py checks them all, and refuses unknown keys).
The YAML files in `fl_app/conf/` only choose: the defaults list picks an option per
group, and an option's file sets its `name` and what differs from these defaults (the
docs' configuration reference is generated from this module).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from fl_app.config.ranges import ranged


@dataclass
class ObjectiveConfig:
    type: str = "classification"  # classification (integer labels) | regression
    loss: str = "sparse_categorical_crossentropy"  # a Keras loss name (mse, mae, ...)
    metrics: list[str] = field(default_factory=lambda: ["accuracy"])  # Keras metric names
    primary: str = "accuracy"  # what runs are judged by: "loss" or one of `metrics`
    higher_is_better: bool = True  # direction of `primary` (false for loss, mse, mae)


SERVER_TEST_SHARE = 0.2  # task.server_test_fraction's default where the server evaluates


@dataclass
class TaskConfig:
    """A task plug-in: model + data + objective (conf/task/*.yaml; docs: "Your own task")."""

    name: str = MISSING  # the task's name (checkpoints, summaries, plots)
    # built-in architecture (cnn | mlp | wide_mlp | regression_mlp), a .keras file, or the
    # import path of a callable returning a keras.Model (compiled or not)
    model: str = MISSING
    model_args: dict[str, Any] = field(default_factory=dict)  # keyword arguments of `model`
    # bundled set (digits | breast_cancer | diabetes | synthetic) or the import path of a callable
    # returning (x, y) arrays
    source: str = MISSING
    source_args: dict[str, Any] = field(default_factory=dict)  # keyword arguments of `source`
    preprocess: str = "none"  # none | standardize: (x - mean) / std per feature
    # standardize's statistics: public ones, {mean: [...], std: [...]} (per named input
    # {input: {mean, std}}), a .json file of them, or `published` (a bundled source's
    # documented ones); null = each holder's own (private: refused under dp.level=record)
    preprocess_stats: Any = None
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    # share held out for the server's test set (null: 0.2 when the server evaluates
    # centrally, else 0: nothing is held out that nobody would use)
    server_test_fraction: float | None = ranged(None, low=0, high=1, high_open=True)
    # share of each partition its holder keeps for federated evaluation
    client_test_fraction: float = ranged(0.2, low=0, high=1, low_open=True, high_open=True)


@dataclass
class TrainConfig:
    local_epochs: int = ranged(2, low=1)  # passes over the local data per round
    batch_size: int = ranged(16, low=1)  # mini-batch size for local training and evaluation
    optimizer: str = "adam"  # sgd | adam
    learning_rate: float = ranged(0.005, low=0, low_open=True)  # optimizer step size


@dataclass
class PartitionConfig:
    name: str = MISSING  # iid | dirichlet | natural
    alpha: float = ranged(
        0.5, low=0, low_open=True
    )  # Dirichlet concentration, > 0 (dirichlet only)
    min_partition_size: int = ranged(10, low=2)  # smallest partition Dirichlet sampling accepts
    self_balancing: bool = False  # stop giving a class to clients above average size
    # natural: one partition per distinct value of this column of a table or Hugging Face
    # source (a site, a hospital); num-supernodes must equal their number
    by: str = ""
    keep_column: bool = False  # natural: keep `by` among the default input columns


@dataclass
class StrategyConfig:
    """The aggregation algorithm (conf/strategy/*.yaml), whatever the privacy mode."""

    name: str = MISSING  # fedavg | fedprox | fedavgm | fedadam | fedyogi (or an app's own)
    # the Flower Strategy the server runs: `_target_` (its import path) and its own
    # arguments (Flower's names: proximal_mu, eta, beta_1, server_momentum, ...)
    algorithm: dict[str, Any] = field(
        default_factory=lambda: {"_target_": "flwr.server.strategy.FedAvg"}
    )
    fraction_fit: float = ranged(
        1.0, low=0, high=1, low_open=True
    )  # share of available clients sampled to train
    fraction_evaluate: float = ranged(1.0, low=0, high=1)  # share sampled for federated evaluation
    min_fit_clients: int = ranged(2, low=1)  # fewest clients sampled, and fewest results aggregated
    min_evaluate_clients: int = ranged(2, low=1)  # fewest clients sampled for evaluation
    min_available_clients: int = ranged(2, low=1)  # nodes that must be connected before a round
    # evaluate on the server's test set; null = whenever the privacy mode shows the server
    # the aggregate (none, secagg), never under privacy=he
    centralized_evaluation: bool | None = None
    evaluate_every: int = ranged(
        1, low=1
    )  # federated evaluation every k rounds; the last round always evaluates
    # clients evaluate the model they receive for fit first: round r's evaluation arrives
    # with round r+1's fit, one message per round, not two; null = whenever the same share
    # of clients is sampled for both (fraction_evaluate == fraction_fit), false otherwise
    evaluate_with_fit: bool | None = None


@dataclass
class PrivacyConfig:
    """The privacy mode (conf/privacy/*.yaml): what the server can see of the updates."""

    name: str = MISSING  # none | he | secagg (fl_app/fl/modes)


@dataclass
class SecAggConfig(PrivacyConfig):
    """privacy=secagg: Flower's SecAgg+ parameters."""

    num_shares: float = ranged(
        3, low=0, low_open=True
    )  # shares per secret (int, or fraction of clients)
    reconstruction_threshold: float = ranged(2, low=0, low_open=True)  # shares to reconstruct
    clipping_range: float = ranged(
        8.0, low=0, low_open=True
    )  # clip updates to [-range, range] before quantising
    quantization_range: int = ranged(4194304, low=2)  # quantisation levels (2^22)


@dataclass
class HEConfig:
    preset: str = MISSING  # seeded | compact | nvflare (fl_app/crypto/presets.py)
    public_context: str = ""  # server: public.ctx; empty in simulation = generate keys
    secret_context: str = ""  # clients: secret.ctx; empty = what the deployment provides
    max_examples: int = ranged(
        1_000_000, low=1, high=10**9
    )  # largest sample count a client may report


@dataclass
class FederationConfig:
    name: str = MISSING  # simulation | deployment
    num_supernodes: int = ranged(
        10, low=1
    )  # SuperNodes: simulated ones, or those expected to connect
    client_num_cpus: int = ranged(1, low=1)  # CPUs reserved per simulated ClientApp
    node_wait_timeout: float = ranged(
        120.0, low=0, low_open=True
    )  # seconds the server waits for enough nodes
    poll_interval: float = ranged(
        0.1, low=0, low_open=True
    )  # seconds before the server first polls for replies again (Flower's own: 3)
    poll_max_interval: float = ranged(
        0.5, low=0, low_open=True
    )  # longest wait between polls: each empty poll doubles it up to this
    connection: str = ""  # deployment: SuperLink connection name in FLWR_HOME/config.toml


@dataclass
class FaultConfig:
    fail_fraction: float = ranged(
        0.0, low=0, high=1
    )  # share of clients whose fit fails each round (tests/demos)
    corrupt_fraction: float = ranged(
        0.0, low=0, high=1
    )  # share whose fit returns a corrupted payload
    seed: int = ranged(0, low=0)  # shifts which clients are hit in which round
    # simulation: partition 0 sends these malformations, one per round, in turn
    # (fl_app/fl/hostile.py; tests and demos); empty: off
    hostile: list[str] = field(default_factory=list)


@dataclass
class DPConfig:
    enabled: bool = False  # differential privacy on the client, before encryption
    level: str = "client"  # client: DP-FedAvg, one holder's whole data | record: DP-SGD
    clip_norm: float = ranged(
        1.0, low=0, low_open=True
    )  # L2 bound on a client's update (client) or on one record's gradient (record)
    noise_multiplier: float = ranged(1.0, low=0)  # noise std / clip_norm (round sum or step)
    delta: float = ranged(
        1e-5, low=0, high=1, low_open=True, high_open=True
    )  # the delta at which epsilon is reported
    target_epsilon: float = ranged(
        0.0, low=0, high=100
    )  # record: each holder's noise for this epsilon over num_rounds, and its cap (0: off)
    max_epsilon: float = ranged(
        0.0, low=0
    )  # record: a holder's budget over its whole ledger, instead of target_epsilon (0: off)


@dataclass
class TrackingConfig:
    name: str = MISSING  # none | mlflow: where each run is logged besides its run directory
    tensorboard: bool = True  # per-round scalars as TensorBoard event files (<run dir>/tensorboard)
    uri: str = ""  # mlflow: tracking URI; empty = sqlite:///<output_root>/mlflow.db (no server)
    experiment: str = ""  # mlflow: experiment name; empty = "fl_app" (fl-experiment: the sweep's)
    run_name: str = ""  # mlflow: run name; empty = the run directory's (fl-experiment: job<N>)


@dataclass
class AppConfig:
    task: TaskConfig = MISSING  # what is learned (group task/)
    privacy: PrivacyConfig = MISSING  # what the server may see of updates (group privacy/)
    strategy: StrategyConfig = MISSING  # the aggregation algorithm (group strategy/)
    partition: PartitionConfig = MISSING  # how data is split (group partition/)
    federation: FederationConfig = MISSING  # where it runs (group federation/)
    he: HEConfig = MISSING  # encryption parameters for privacy=he (group he/)
    train: TrainConfig = field(default_factory=TrainConfig)  # local training
    fault: FaultConfig = field(default_factory=FaultConfig)  # fault injection, off
    dp: DPConfig = field(default_factory=DPConfig)  # differential privacy, off
    tracking: TrackingConfig = MISSING  # TensorBoard, and MLflow (group tracking/)
    log_level: str = "info"  # debug (everything, frameworks' start-up lines too) | info | warning
    seed: int = ranged(
        42, low=0, high=2**32 - 1
    )  # seeds data splits, model init and local shuffling
    num_rounds: int = ranged(3, low=1)  # total federated rounds (a resumed run counts done ones)
    output_dir: str = ""  # run directory; empty means <output_root>/<time>_run<id>
    output_root: str = "~/fl_app_outputs"  # parent of default run directories
    resume: bool = False  # continue from <output_dir>/checkpoint.npz


@dataclass
class SweepConfig(AppConfig):
    """`fl-experiment` (fl_app/conf_root/sweep.yaml): the app's config plus what only sweeps use."""

    quiet: bool = False  # no progress bars, one line per job


def plain(node: Any) -> Any:
    """A config value as plain Python (dicts and lists), whether typed or composed."""
    if dataclasses.is_dataclass(node):
        return dataclasses.asdict(node)
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def register() -> None:
    """Put the schemas where conf/ names them (idempotent)."""
    store = ConfigStore.instance()
    store.store(name="app_schema", node=AppConfig)
    store.store(name="sweep_schema", node=SweepConfig)
    # Outside the privacy/ group, so that it is not one of its options.
    store.store(group="schema/privacy", name="secagg", node=SecAggConfig)


register()
