"""Builds what the apps need from the typed config: the model, a node's data, and the
server's strategy (the privacy mode's aggregator around the algorithm)."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

import keras
from flwr.common import (
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server.strategy import Strategy
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from fl_app.config import ConfigError, evaluates_centrally
from fl_app.config.schema import AppConfig
from fl_app.config.task import data_spec, federated_statistics, objective
from fl_app.crypto.packing import Layout
from fl_app.fl.evaluation import EvaluationPlan, PooledMetrics
from fl_app.fl.example_counts import ExampleCounts, grid_properties_query
from fl_app.fl.modes import Mode, ServerSetup
from fl_app.fl.protocol import DP_LEDGER_DIR_KEY, NODE_DATA_KEY
from fl_app.fl.results import weighted_mean_metrics
from fl_app.fl.server_data import centralized_evaluation, check_task  # noqa: F401
from fl_app.fl.server_keys import ServerKeys
from fl_app.fl.statistics import ServerStatistics
from fl_app.fl.strategy import FederatedStrategy
from fl_app.fl.wire import CountingGrid
from fl_app.ml.data import (
    ClientData,
    PartitionSpec,
    load_client_data,
)
from fl_app.ml.models import BUILTIN_MODELS, build_model, weights_of
from fl_app.ml.node_files import load_node_data
from fl_app.ml.statistics import moments_length
from fl_app.run.state import RunState

LEDGER_DIR = "dp_ledgers"  # in a simulated run's directory: one DP ledger per partition


def new_model(cfg: AppConfig) -> keras.Model:
    """The configured model, initialised from the run's seed."""
    task = cfg.task
    args = dict(task.model_args)
    if task.model in BUILTIN_MODELS:  # shapes from the bundled data unless given
        data = data_spec(task)
        if data.feature_shape is not None:
            args.setdefault("input_shape", data.feature_shape)
        args.setdefault("outputs", data.num_classes if data.classification else 1)
        args.setdefault("name", f"{task.name}_{task.model}")
    return build_model(
        task.model,
        model_args=args,
        objective=objective(task),
        optimizer=cfg.train.optimizer,
        learning_rate=cfg.train.learning_rate,
        seed=cfg.seed,
    )


# ---------------------------------------------------------------- the ClientApp side
def node_data(cfg: AppConfig, node_config: dict) -> tuple[ClientData, int]:
    """This node's data and training seed.

    A deployed SuperNode reads only its own file (node config `data-path`); a simulated
    one takes its partition of the bundled data set (`partition-id`, `num-partitions`).
    """
    task, federated = cfg.task, federated_statistics(cfg)
    if NODE_DATA_KEY in node_config:
        path = Path(str(node_config[NODE_DATA_KEY])).expanduser()
        spec = data_spec(task, federated=federated)
        data = load_node_data(path, spec, client_test_fraction=task.client_test_fraction,
                              seed=cfg.seed)  # fmt: skip
        return data, cfg.seed + zlib.crc32(str(path).encode())
    partition_id = int(node_config["partition-id"])
    data = load_client_data(
        data_spec(task, cfg.partition, federated=federated),
        PartitionSpec.from_config(cfg.partition, int(node_config["num-partitions"])),
        partition_id,
        server_test_fraction=task.server_test_fraction,
        client_test_fraction=task.client_test_fraction,
        seed=cfg.seed,
    )
    return data, cfg.seed + 10_007 * (partition_id + 1)


# ---------------------------------------------------------------- the ServerApp side
# What fl_app hands every algorithm (from strategy.* and the run), not strategy.algorithm.
_RUN_ARGUMENTS = (
    "fraction_fit", "fraction_evaluate", "min_fit_clients", "min_evaluate_clients",
    "min_available_clients", "evaluate_fn", "on_fit_config_fn", "initial_parameters",
    "fit_metrics_aggregation_fn", "evaluate_metrics_aggregation_fn",
)  # fmt: skip


def build_algorithm(
    cfg: AppConfig,
    initial: Parameters,
    net: keras.Model,
    run_dir: Path,
    statistics: ServerStatistics | None = None,
) -> Strategy:
    """The aggregation algorithm: Flower's strategy that `strategy.algorithm` names, given
    the run's sampling, metric means, initial model and, where the server sees the
    aggregate, the central evaluation."""
    strat = cfg.strategy
    spec = dict(strat.algorithm)
    given = sorted(set(spec) & set(_RUN_ARGUMENTS))
    if given:
        raise ConfigError(
            f"strategy.algorithm.{given[0]} is invalid: fl_app passes it to the algorithm "
            f"itself; set strategy.{given[0]} (or it is the run's own: {', '.join(_RUN_ARGUMENTS)})"
        )
    try:
        return instantiate(
            spec,
            fraction_fit=strat.fraction_fit,
            fraction_evaluate=strat.fraction_evaluate,
            min_fit_clients=strat.min_fit_clients,
            min_evaluate_clients=strat.min_evaluate_clients,
            min_available_clients=strat.min_available_clients,
            evaluate_fn=centralized_evaluation(cfg, net, statistics)
            if evaluates_centrally(cfg)
            else None,
            on_fit_config_fn=_ledger_config(cfg, run_dir),
            initial_parameters=initial,
            fit_metrics_aggregation_fn=weighted_mean_metrics,
            evaluate_metrics_aggregation_fn=PooledMetrics(net),
        )
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise ConfigError(
            f"strategy.algorithm={spec} is invalid: {type(cause).__name__}: {cause}"
        ) from err


def _ledger_config(cfg: AppConfig, run_dir: Path) -> Callable[[int], dict[str, Scalar]]:
    """Simulated DP-SGD holders keep their ledgers under the run directory."""
    if not (cfg.dp.enabled and cfg.dp.level == "record" and cfg.federation.name == "simulation"):
        return lambda rnd: {}
    return lambda rnd: {DP_LEDGER_DIR_KEY: str(run_dir / LEDGER_DIR)}


# What Flower's server optimisers keep between rounds (FedOpt: FedAdam, FedYogi,
# FedAdagrad; FedAvgM): saved with every checkpoint, so a resumed run continues them.
SERVER_STATE = ("m_t", "v_t", "momentum_vector")


def server_state_of(algorithm: Strategy) -> dict[str, list]:
    """The algorithm's optimiser state, by attribute (empty for FedAvg and FedProx)."""
    return {
        name: list(getattr(algorithm, name))
        for name in SERVER_STATE
        if getattr(algorithm, name, None) is not None
    }


def build_strategy(
    cfg: AppConfig,
    mode: Mode,
    state: RunState,
    *,
    net: keras.Model,
    keys: ServerKeys | None,  # given for encrypted modes
    grid: CountingGrid,
    on_round_complete: Callable[[int], None] | None = None,
) -> FederatedStrategy:
    """The mode's aggregator around the algorithm, starting from `state`; `net` still
    holds the initial weights."""
    initial = ndarrays_to_parameters(state.weights)
    run_dir = state.checkpoint_path.parent
    statistics = None
    if federated_statistics(cfg) and mode.counts_examples:  # asked with the counts
        statistics = ServerStatistics(moments_length(net), run_dir)
    algorithm = build_algorithm(cfg, initial, net, run_dir, statistics)
    for name, arrays in state.server_state.items():  # a resumed run's optimiser state
        setattr(algorithm, name, arrays)
    counts = None
    if mode.counts_examples:  # SecAgg+ caps weights in its own protocol
        query = grid_properties_query(grid, timeout=cfg.federation.node_wait_timeout)
        counts = ExampleCounts(query, max_examples=cfg.he.max_examples)
    setup = ServerSetup(
        algorithm,
        initial,
        encrypted=state.encrypted,
        history=state.history,
        counts=counts,
        extra={"keys": keys, "layout": Layout.of(weights_of(net))},
    )
    aggregator = mode.aggregator(setup)
    if statistics is not None:
        statistics.attach(aggregator.statistics_sum(statistics.length))
        counts.statistics = statistics
    strategy = FederatedStrategy(
        algorithm,
        aggregator,
        history=state.history,
        counts=counts,
        min_fit_clients=cfg.strategy.min_fit_clients,
        evaluation=EvaluationPlan.of(cfg.strategy, cfg.num_rounds),
        combine=algorithm.evaluate_metrics_aggregation_fn,  # PooledMetrics
        round_offset=state.completed_rounds,
        on_round_end=lambda rnd, parameters, encrypted: state.save(
            rnd, parameters_to_ndarrays(parameters), encrypted, server_state_of(algorithm)
        ),
        on_round_complete=on_round_complete,
    )
    strategy.wire, strategy.statistics = grid, statistics
    return strategy
