"""Builds what the apps need from the composed config and the mode table: the model,
the client of a node, and the server's strategy."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
from flwr.common import NDArrays, Scalar, ndarrays_to_parameters, parameters_to_ndarrays
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from fl_app.config import Mode
from fl_app.config.task import data_spec, objective
from fl_app.crypto.packing import Layout
from fl_app.fl.evaluation import EvaluationPlan
from fl_app.fl.example_counts import ExampleCounts, grid_properties_query
from fl_app.fl.protocol import DP_LEDGER_DIR_KEY, NODE_DATA_KEY, ROUND_KEY
from fl_app.fl.server_keys import ServerKeys
from fl_app.fl.strategy import RecordingFedAvg
from fl_app.fl.wire import CountingGrid
from fl_app.ml.data import ClientData, PartitionSpec, load_client_data, load_server_test
from fl_app.ml.dpsgd import refuse_batch_mixing, refuse_untrained_state
from fl_app.ml.models import BUILTIN_MODELS, build_model, check_fits, evaluate, weights_of
from fl_app.ml.node_files import load_node_data
from fl_app.run.state import RunState

LEDGER_DIR = "dp_ledgers"  # in a simulated run's directory: one DP ledger per partition


def new_model(cfg: DictConfig) -> keras.Model:
    """The configured model, initialised from the run's seed."""
    task = cfg.task
    args = OmegaConf.to_container(task.model_args, resolve=True)
    if task.model in BUILTIN_MODELS:  # shapes from the bundled data unless given
        data = data_spec(cfg.task)
        if data.feature_shape is not None:
            args.setdefault("input_shape", data.feature_shape)
        args.setdefault("outputs", data.num_classes if data.classification else 1)
        args.setdefault("name", f"{task.name}_{task.model}")
    return build_model(
        str(task.model),
        model_args=args,
        objective=objective(cfg.task),
        optimizer=cfg.train.optimizer,
        learning_rate=float(cfg.train.learning_rate),
        seed=int(cfg.seed),
    )


# ---------------------------------------------------------------- the ClientApp side
def node_data(cfg: DictConfig, node_config: dict) -> tuple[ClientData, int]:
    """This node's data and training seed.

    A deployed SuperNode reads only its own file (node config `data-path`); a simulated
    one takes its partition of the bundled data set (`partition-id`, `num-partitions`).
    """
    if NODE_DATA_KEY in node_config:
        path = Path(str(node_config[NODE_DATA_KEY])).expanduser()
        data = load_node_data(
            path,
            data_spec(cfg.task),
            client_test_fraction=float(cfg.task.client_test_fraction),
            seed=int(cfg.seed),
        )
        return data, int(cfg.seed) + zlib.crc32(str(path).encode())
    partition_id = int(node_config["partition-id"])
    data = load_client_data(
        data_spec(cfg.task),
        PartitionSpec.from_config(cfg.partition, int(node_config["num-partitions"])),
        partition_id,
        server_test_fraction=float(cfg.task.server_test_fraction),
        client_test_fraction=float(cfg.task.client_test_fraction),
        seed=int(cfg.seed),
    )
    return data, int(cfg.seed) + 10_007 * (partition_id + 1)


# ---------------------------------------------------------------- the ServerApp side
def check_task(cfg: DictConfig, net: keras.Model) -> None:
    """In simulation, where the server can see the task's data: fail before round 1 when
    model and data do not fit, or Keras does not know the objective's names. Everywhere:
    a model that DP-SGD cannot train per record (dp.level=record) is refused — by its
    layers at any depth, and in simulation also by what a training step does to it."""
    record_dp = cfg.dp.enabled and cfg.dp.level == "record"
    if record_dp:
        refuse_batch_mixing(net)
    if cfg.federation.name != "simulation":
        return  # each SuperNode checks its own data when it builds the model (and DP-SGD
        # its state before its first step)
    test = load_server_test(data_spec(cfg.task), float(cfg.task.server_test_fraction), int(cfg.seed))
    check_fits(net, test, dry_run=True)
    if record_dp:
        refuse_untrained_state(net, test.take(slice(0, 8)).x)


def centralized_evaluation(cfg: DictConfig, net: keras.Model):
    """An `evaluate_fn` on the server's held-out test set (plaintext modes only)."""
    test = load_server_test(data_spec(cfg.task), float(cfg.task.server_test_fraction), int(cfg.seed))

    def evaluate_fn(
        server_round: int, weights: NDArrays, config: dict[str, Scalar]
    ) -> tuple[float, dict[str, Scalar]]:
        net.set_weights(weights)
        results = evaluate(net, test, batch_size=int(cfg.train.batch_size))
        return results.pop("loss"), results

    return evaluate_fn


def build_strategy(
    cfg: DictConfig,
    mode: Mode,
    state: RunState,
    *,
    net: keras.Model,
    keys: ServerKeys | None,  # given for encrypted modes
    grid: CountingGrid,
    on_round_complete: Callable[[int], None] | None = None,
) -> RecordingFedAvg:
    """The mode's strategy, starting from `state`; `net` still holds the initial weights."""
    strat = cfg.strategy
    ledger_dir = {}  # simulated holders keep their DP ledgers under the run directory
    if cfg.dp.enabled and cfg.dp.level == "record" and cfg.federation.name == "simulation":
        ledger_dir[DP_LEDGER_DIR_KEY] = str(state.checkpoint_path.parent / LEDGER_DIR)
    arguments: dict[str, Any] = dict(
        history=state.history,
        on_round_end=lambda rnd, parameters, encrypted: state.save(
            rnd, parameters_to_ndarrays(parameters), encrypted
        ),
        on_round_complete=on_round_complete,
        round_offset=state.completed_rounds,
        evaluation=EvaluationPlan(
            int(strat.evaluate_every), bool(strat.evaluate_with_fit), int(cfg.num_rounds)
        ),
        initial_parameters=ndarrays_to_parameters(state.weights),
        fraction_fit=float(strat.fraction_fit),
        fraction_evaluate=float(strat.fraction_evaluate),
        min_fit_clients=int(strat.min_fit_clients),
        min_evaluate_clients=int(strat.min_evaluate_clients),
        min_available_clients=int(strat.min_available_clients),
        evaluate_fn=centralized_evaluation(cfg, net) if strat.centralized_evaluation else None,
        on_fit_config_fn=lambda rnd: {ROUND_KEY: rnd, **ledger_dir},
        on_evaluate_config_fn=lambda rnd: {ROUND_KEY: rnd},
    )
    query = grid_properties_query(grid, timeout=float(cfg.federation.node_wait_timeout))
    counts = ExampleCounts(query, max_examples=int(cfg.he.max_examples))
    if mode.encrypted or mode.workflow.endswith(".default_workflow"):
        # counts announced once, before a client's first round: a result or an evaluation
        # that claims others is refused (SecAgg+ caps weights in its own protocol)
        arguments["example_counts"] = counts
    if mode.encrypted:
        arguments.update(
            public_context=keys.context,
            preset=keys.preset,
            layout=Layout.of(weights_of(net)),
            encrypted=state.encrypted,
            simulation_secret_path=keys.simulation_secret_path,
        )
    strategy = get_class(mode.strategy)(**arguments)
    strategy.wire = grid
    return strategy
