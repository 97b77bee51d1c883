"""The ServerApp's work: compose config, restore or initialise, run rounds, write artifacts."""

from __future__ import annotations

import json
import logging
import math
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import keras
from flwr.app import Context
from flwr.common import (
    NDArrays,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server import Grid, LegacyContext, ServerConfig
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from omegaconf import DictConfig

from fl_app.artifacts import (
    RunHistory,
    summarise,
    write_json,
    write_metrics,
    write_plot,
)
from fl_app.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from fl_app.config import ConfigError, load_config, to_yaml
from fl_app.crypto.keys import (
    MANIFEST_NAME,
    PUBLIC_NAME,
    SECRET_NAME,
    fingerprint,
    generate_keys,
    load_public_context,
)
from fl_app.crypto.packing import Layout
from fl_app.crypto.presets import get_preset
from fl_app.dp import ACCOUNTANT, RoundRelease, epsilon
from fl_app.fl.client import ROUND_KEY
from fl_app.fl.factory import new_model
from fl_app.fl.he_strategy import HEFedAvg
from fl_app.fl.logs import use_flower_handlers
from fl_app.fl.strategy import FlAppFedAvg
from fl_app.fl.wire import CountingGrid
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


def _identity(cfg: DictConfig, key_fingerprint: str | None) -> dict[str, Any]:
    """What a checkpoint must share with the run that resumes it."""
    identity = {"strategy": cfg.strategy.name, "task": cfg.task.name, "model": cfg.task.model}
    if key_fingerprint is not None:
        identity.update(he_preset=cfg.he.preset, he_fingerprint=key_fingerprint)
    return identity


class ServerKeys:
    """The server's HE material: the public context only, never the secret key."""

    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        self.secret_hint = ""
        if cfg.he.public_context:
            path = Path(cfg.he.public_context).expanduser()
        elif cfg.federation.name == "simulation":
            key_dir = run_dir / "keys"
            path = key_dir / PUBLIC_NAME
            if not path.exists():
                generate_keys(key_dir, cfg.he.preset)
                logger.info(
                    "No he.public_context configured: generated %s HE keys into %s "
                    "(simulation only; provision deployments with `fl-app keygen`)",
                    cfg.he.preset,
                    key_dir,
                )
            if not cfg.he.secret_context:
                self.secret_hint = str(key_dir / SECRET_NAME)
        else:
            raise ConfigError(
                "he.public_context is empty: allowed a path to public.ctx outside simulation"
            )
        self.context = load_public_context(path)
        self.preset = get_preset(cfg.he.preset)
        self.fingerprint = fingerprint(self.context)
        self._check_manifest(path.parent / MANIFEST_NAME)

    def _check_manifest(self, manifest_path: Path) -> None:
        if not manifest_path.exists():
            return
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("preset") != self.preset.name:
            raise ConfigError(
                f"he.preset={self.preset.name!r} is invalid for the keys in "
                f"{manifest_path.parent}: they were made for preset {manifest.get('preset')!r}"
            )


class RunState:
    """Where a run starts from: fresh weights or its last checkpoint."""

    def __init__(self, cfg: DictConfig, run_dir: Path, key_fingerprint: str | None) -> None:
        self.checkpoint_path = run_dir / CHECKPOINT_NAME
        self.identity = _identity(cfg, key_fingerprint)
        self.net = new_model(cfg)  # one model for layout, central evaluation and saving
        self.layout_weights = weights_of(self.net)
        if cfg.resume:
            arrays, meta = load_checkpoint(self.checkpoint_path)
            if meta.get("identity") != self.identity:
                raise CheckpointError(
                    f"checkpoint {self.checkpoint_path} belongs to a run with "
                    f"{meta.get('identity')}; this run is {self.identity}"
                )
            self.weights: NDArrays = arrays
            self.encrypted = bool(meta["encrypted"])
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
            self.weights = self.layout_weights
            self.encrypted = False
            self.history = RunHistory()
            self.completed_rounds = 0
            self.previous_seconds = 0.0
        self._started = time.monotonic()

    def wall_seconds(self) -> float:
        return self.previous_seconds + time.monotonic() - self._started

    def save(self, completed_round: int, parameters: Parameters, encrypted: bool) -> None:
        """Checkpoint the global model after `completed_round` (atomic)."""
        self.weights = parameters_to_ndarrays(parameters)
        self.encrypted = encrypted
        save_checkpoint(
            self.checkpoint_path,
            self.weights,
            {
                "identity": self.identity,
                "encrypted": encrypted,
                "completed_rounds": completed_round,
                "history": self.history.to_json(),
                "wall_seconds": self.wall_seconds(),
            },
        )


def centralized_evaluation(cfg: DictConfig, net: keras.Model):
    """An `evaluate_fn` on the server's held-out test set (plaintext mode only)."""
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


def build_strategy(cfg: DictConfig, state: RunState, keys: ServerKeys | None) -> FlAppFedAvg:
    """The configured strategy, starting from `state`."""
    common = _fedavg_arguments(cfg, state)
    if keys is None:
        return FlAppFedAvg(**common)
    return HEFedAvg(
        public_context=keys.context,
        preset=keys.preset,
        layout=Layout.of(state.layout_weights),
        max_examples=int(cfg.he.max_examples),
        encrypted=state.encrypted,
        secret_hint=keys.secret_hint,
        query_timeout=float(cfg.federation.node_wait_timeout),
        **common,
    )


def _fedavg_arguments(cfg: DictConfig, state: RunState) -> dict[str, Any]:
    """FedAvg's arguments from the config, shared by the plaintext and HE strategies."""
    strat = cfg.strategy
    return dict(
        history=state.history,
        on_round_end=state.save,
        round_offset=state.completed_rounds,
        initial_parameters=ndarrays_to_parameters(state.weights),
        fraction_fit=float(strat.fraction_fit),
        fraction_evaluate=float(strat.fraction_evaluate),
        min_fit_clients=int(strat.min_fit_clients),
        min_evaluate_clients=int(strat.min_evaluate_clients),
        min_available_clients=int(strat.min_available_clients),
        evaluate_fn=(
            centralized_evaluation(cfg, state.net) if strat.centralized_evaluation else None
        ),
        on_fit_config_fn=lambda rnd: {ROUND_KEY: rnd},
    )


def write_artifacts(cfg: DictConfig, run_dir: Path, state: RunState, run_id: int) -> dict[str, Any]:
    """Metrics, plot, final model and summary.json in the run directory."""
    history = state.history
    write_metrics(history, run_dir)
    write_plot(history, run_dir / "metrics.png", f"{cfg.task.name} / {cfg.strategy.name}")
    if state.encrypted:
        final_model = None
        logger.info(
            "The final model is encrypted; decrypt it where secret.ctx lives: fl-app decrypt "
            "--secret secret.ctx --checkpoint %s --out model.keras",
            state.checkpoint_path,
        )
    else:
        state.net.set_weights(state.weights)
        state.net.save(run_dir / MODEL_NAME)
        final_model = str(run_dir / MODEL_NAME)
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
        final_model=final_model,
        checkpoint=str(state.checkpoint_path),
        encrypted=state.encrypted,
        model_params=int(sum(w.size for w in state.layout_weights)),
    )
    if cfg.dp.enabled:
        summary["dp"] = privacy_report(cfg, history)
        logger.info("Privacy spent: epsilon=%s at delta=%g", summary["dp"]["epsilon"],
                    cfg.dp.delta)  # fmt: skip
    write_json(run_dir / "summary.json", summary)
    return summary


def privacy_report(cfg: DictConfig, history: RunHistory) -> dict[str, Any]:
    """The DP guarantee of the released global models, for summary.json."""
    noise = float(cfg.dp.noise_multiplier)
    releases = []
    for row in history.rows():
        if row.get("fit_clients", 0) < max(1, int(cfg.strategy.min_fit_clients)):
            continue  # nothing was released this round
        # (rows of checkpoints older than these counters: every sampled client answered)
        sampled = int(row.get("fit_sampled", row["fit_clients"] + row.get("fit_failures", 0)))
        releases.append(
            RoundRelease.of(
                sampled=sampled,
                available=int(row.get("fit_available", sampled)),
                aggregated=int(row["fit_clients"]),
                noise_multiplier=noise,
            )
        )
    spent = epsilon(releases, float(cfg.dp.delta))
    return {
        "epsilon": spent if math.isfinite(spent) else None,  # None: no noise, no bound
        "delta": float(cfg.dp.delta),
        "clip_norm": float(cfg.dp.clip_norm),
        "noise_multiplier": noise,
        "released_rounds": len(releases),
        "sampling_rates": [r.sampling_rate for r in releases],
        "effective_noise_multipliers": [r.noise_multiplier for r in releases],
        "accountant": ACCOUNTANT,
        "unit": "one client (its whole data set), so also any one record",
        # Under plaintext FedAvg the server sees each update with 1/sqrt(m) of the noise.
        "server_sees_individual_updates": cfg.strategy.name == "fedavg",
    }


def workflow(cfg: DictConfig) -> DefaultWorkflow:
    """Flower's default round loop; with strategy=secagg its fit step is SecAgg+."""
    if cfg.strategy.name != "secagg":
        return DefaultWorkflow()
    strat = cfg.strategy
    num_shares = strat.secagg_num_shares
    threshold = strat.secagg_reconstruction_threshold
    return DefaultWorkflow(
        fit_workflow=SecAggPlusWorkflow(
            num_shares=int(num_shares) if num_shares >= 1 else float(num_shares),
            reconstruction_threshold=int(threshold) if threshold >= 1 else float(threshold),
            clipping_range=float(strat.secagg_clipping_range),
            quantization_range=int(strat.secagg_quantization_range),
        )
    )


def run_server(grid: Grid, context: Context) -> None:
    """Everything the ServerApp does for one run."""
    use_flower_handlers()
    cfg = load_config(context.run_config)
    run_dir = resolve_run_dir(cfg, context.run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    keys = ServerKeys(cfg, run_dir) if cfg.strategy.name == "he" else None
    state = RunState(cfg, run_dir, keys.fingerprint if keys else None)
    strategy = build_strategy(cfg, state, keys)
    grid = strategy.wire = CountingGrid(grid)
    remaining = int(cfg.num_rounds) - state.completed_rounds
    if remaining > 0:
        wait_for_nodes(grid, cfg)
        legacy = LegacyContext(
            context=context,
            config=ServerConfig(num_rounds=remaining),
            strategy=strategy,
        )
        workflow(cfg)(grid, legacy)
    else:
        logger.info("All %d rounds were already completed", cfg.num_rounds)
    summary = write_artifacts(cfg, run_dir, state, context.run_id)
    logger.info(
        "Run finished: %d round(s), final accuracy %s",
        summary["rounds_completed"],
        summary["final_accuracy"],
    )
    logger.info("Run artifacts written to %s", run_dir)
