"""Typed schemas of every parameter, registered in Hydra's ConfigStore.

Each default lives here, once, with its one-line meaning. The YAML files in `conf/`
only choose: the defaults list picks an option per group, and an option's file sets
its `name` and what differs from these defaults (see conf/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class ObjectiveConfig:
    type: str = "classification"  # classification (integer labels) | regression
    loss: str = "sparse_categorical_crossentropy"  # a Keras loss name (mse, mae, ...)
    metrics: list[str] = field(default_factory=lambda: ["accuracy"])  # Keras metric names
    primary: str = "accuracy"  # what runs are judged by: "loss" or one of `metrics`
    higher_is_better: bool = True  # direction of `primary` (false for loss, mse, mae)


@dataclass
class TaskConfig:
    """A task plug-in: model + data + objective (conf/task/*.yaml; README "Your own task")."""

    name: str = MISSING  # the task's name (checkpoints, summaries, plots)
    # built-in architecture (cnn | mlp | wide_mlp | seed_mlp), a .keras file, or the
    # import path of a callable returning a keras.Model (compiled or not)
    model: str = MISSING
    model_args: dict[str, Any] = field(default_factory=dict)  # keyword arguments of `model`
    # bundled set (digits | breast_cancer | diabetes) or the import path of a callable
    # returning (x, y) arrays
    source: str = MISSING
    source_args: dict[str, Any] = field(default_factory=dict)  # keyword arguments of `source`
    preprocess: str = "none"  # none | standardize (each holder with its own statistics)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
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
    name: str = MISSING  # the privacy mode (fl_app/config/modes.py): fedavg | he | secagg
    fraction_fit: float = 1.0  # share of available clients sampled to train
    fraction_evaluate: float = 1.0  # share sampled for federated evaluation
    min_fit_clients: int = 2  # fewest clients sampled, and fewest results aggregated
    min_evaluate_clients: int = 2  # fewest clients sampled for evaluation
    min_available_clients: int = 2  # nodes that must be connected before a round
    centralized_evaluation: bool = True  # evaluate on the server test set (plaintext)


@dataclass
class SecAggStrategyConfig(StrategyConfig):
    """strategy=secagg: Flower's SecAgg+ parameters on top of the common ones."""

    secagg_num_shares: float = 3  # shares per secret (int, or fraction of clients)
    secagg_reconstruction_threshold: float = 2  # shares needed to reconstruct
    secagg_clipping_range: float = 8.0  # clip updates to [-range, range] before quantising
    secagg_quantization_range: int = 4194304  # quantisation levels (2^22)


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


@dataclass
class SweepConfig(AppConfig):
    """`fl-experiment` (conf/sweep.yaml): the app's config plus what only sweeps use."""

    quiet: bool = False  # no progress bars, one line per job


def register() -> None:
    """Put the schemas where conf/ names them (idempotent)."""
    store = ConfigStore.instance()
    store.store(name="app_schema", node=AppConfig)
    store.store(name="sweep_schema", node=SweepConfig)
    # Outside the strategy/ group, so that it is not one of its options.
    store.store(group="schema/strategy", name="secagg", node=SecAggStrategyConfig)


register()
