"""The ServerApp's work: compose config, restore or initialise, run rounds, write artifacts."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.common import (
    NDArrays,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server import Grid, LegacyContext, ServerConfig
from flwr.server.workflow import DefaultWorkflow
from omegaconf import DictConfig

from fl_app.artifacts import (
    RunHistory,
    summarise,
    write_json,
    write_metrics,
    write_plot,
)
from fl_app.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from fl_app.config import load_config, to_yaml
from fl_app.fl.client import ROUND_KEY, new_model
from fl_app.fl.logs import use_flower_handlers
from fl_app.fl.strategy import FlAppFedAvg
from fl_app.ml.data import load_server_test
from fl_app.ml.models import evaluate, weights_of

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.npz"
MODEL_NAME = "model.keras"


def resolve_run_dir(cfg: DictConfig, run_id: int) -> Path:
    """`output_dir`, or a new time-stamped directory under `output_root`."""
    if cfg.output_dir:
        return Path(cfg.output_dir).expanduser().resolve()
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    return Path(cfg.output_root).expanduser().resolve() / f"{stamp}_run{run_id}"


def _identity(cfg: DictConfig) -> dict[str, Any]:
    """What a checkpoint must share with the run that resumes it."""
    return {
        "strategy": cfg.strategy.name,
        "task": cfg.task.name,
        "model": cfg.task.model,
    }


class RunState:
    """Where a run starts from: fresh weights or its last checkpoint."""

    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        self.checkpoint_path = run_dir / CHECKPOINT_NAME
        self.identity = _identity(cfg)
        if cfg.resume:
            arrays, meta = load_checkpoint(self.checkpoint_path)
            if meta.get("identity") != self.identity:
                raise CheckpointError(
                    f"checkpoint {self.checkpoint_path} belongs to a run with "
                    f"{meta.get('identity')}; this run is {self.identity}"
                )
            self.weights: NDArrays = arrays
            self.history = RunHistory(meta["history"])
            self.completed_rounds = int(meta["completed_rounds"])
            self.previous_seconds = float(meta["wall_seconds"])
            logger.info(
                "Resuming from %s after round %d",
                self.checkpoint_path,
                self.completed_rounds,
            )
        else:
            if self.checkpoint_path.exists():
                raise CheckpointError(
                    f"{self.checkpoint_path} already exists; pass overrides='resume=true' "
                    "to continue that run, or choose another output-dir"
                )
            self.weights = weights_of(new_model(cfg))
            self.history = RunHistory()
            self.completed_rounds = 0
            self.previous_seconds = 0.0
        self._started = time.monotonic()

    def wall_seconds(self) -> float:
        return self.previous_seconds + time.monotonic() - self._started

    def save(self, completed_round: int, parameters: Parameters) -> None:
        """Checkpoint the global model after `completed_round` (atomic)."""
        save_checkpoint(
            self.checkpoint_path,
            parameters_to_ndarrays(parameters),
            {
                "identity": self.identity,
                "completed_rounds": completed_round,
                "history": self.history.to_json(),
                "wall_seconds": self.wall_seconds(),
            },
        )


def centralized_evaluation(cfg: DictConfig):
    """An `evaluate_fn` on the server's held-out test set (plaintext mode only)."""
    net = new_model(cfg)
    test = load_server_test(cfg.task.name, float(cfg.task.server_test_fraction), int(cfg.seed))

    def evaluate_fn(
        server_round: int, weights: NDArrays, config: dict[str, Scalar]
    ) -> tuple[float, dict[str, Scalar]]:
        net.set_weights(weights)
        loss, accuracy = evaluate(net, test, batch_size=int(cfg.train.batch_size))
        return loss, {"accuracy": accuracy}

    return evaluate_fn


def wait_for_nodes(grid: Grid, cfg: DictConfig) -> None:
    """Fail clearly, instead of waiting forever, when too few nodes connect."""
    needed = int(cfg.strategy.min_available_clients)
    timeout = float(cfg.federation.node_wait_timeout)
    deadline = time.monotonic() + timeout
    while (connected := len(list(grid.get_node_ids()))) < needed:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{connected} node(s) connected within {timeout:.0f}s "
                f"(federation.node_wait_timeout), but strategy.min_available_clients="
                f"{needed} are required"
            )
        time.sleep(1.0)
    if connected != cfg.federation.num_supernodes:
        logger.warning(
            "%d nodes connected; federation.num_supernodes says %d",
            connected,
            cfg.federation.num_supernodes,
        )


def build_strategy(cfg: DictConfig, state: RunState) -> FlAppFedAvg:
    """The configured FedAvg, starting from `state`."""
    strat = cfg.strategy
    return FlAppFedAvg(
        history=state.history,
        on_round_end=state.save,
        round_offset=state.completed_rounds,
        initial_parameters=ndarrays_to_parameters(state.weights),
        fraction_fit=float(strat.fraction_fit),
        fraction_evaluate=float(strat.fraction_evaluate),
        min_fit_clients=int(strat.min_fit_clients),
        min_evaluate_clients=int(strat.min_evaluate_clients),
        min_available_clients=int(strat.min_available_clients),
        evaluate_fn=centralized_evaluation(cfg) if strat.centralized_evaluation else None,
        on_fit_config_fn=lambda rnd: {ROUND_KEY: rnd},
    )


def write_artifacts(
    cfg: DictConfig, run_dir: Path, state: RunState, final: NDArrays, run_id: int
) -> dict[str, Any]:
    """Metrics, plot, final model and summary.json in the run directory."""
    history = state.history
    write_metrics(history, run_dir)
    write_plot(history, run_dir / "metrics.png", f"{cfg.task.name} / {cfg.strategy.name}")
    net = new_model(cfg)
    net.set_weights(final)
    net.save(run_dir / MODEL_NAME)
    fitted = [row["round"] for row in history.rows() if "fit_clients" in row]
    summary = summarise(
        history,
        strategy=cfg.strategy.name,
        task=cfg.task.name,
        partition=cfg.partition.name,
        run_id=run_id,
        rounds_completed=max(fitted, default=0),
        wall_seconds=round(state.wall_seconds(), 3),
        run_dir=str(run_dir),
    )
    write_json(run_dir / "summary.json", summary)
    return summary


def run_server(grid: Grid, context: Context) -> None:
    """Everything the ServerApp does for one run."""
    use_flower_handlers()
    cfg = load_config(context.run_config)
    run_dir = resolve_run_dir(cfg, context.run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    state = RunState(cfg, run_dir)
    strategy = build_strategy(cfg, state)
    remaining = int(cfg.num_rounds) - state.completed_rounds
    if remaining > 0:
        wait_for_nodes(grid, cfg)
        legacy = LegacyContext(
            context=context,
            config=ServerConfig(num_rounds=remaining),
            strategy=strategy,
        )
        DefaultWorkflow()(grid, legacy)
    else:
        logger.info("All %d rounds were already completed", cfg.num_rounds)
    final = parameters_to_ndarrays(strategy.latest_parameters)
    summary = write_artifacts(cfg, run_dir, state, final, context.run_id)
    logger.info(
        "Run finished: %d round(s), final accuracy %s",
        summary["rounds_completed"],
        summary["final_accuracy"],
    )
    logger.info("Run artifacts written to %s", run_dir)
