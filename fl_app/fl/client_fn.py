"""The client for each ClientApp call, from what the worker process already built.

Flower calls `client_fn` for every message (example-count query, fit, evaluate), and in
simulation one worker process serves many partitions in turn. What is the same for
every such call is built once per process, keyed by what determines it:

- the composed config: by the run config and the app's search path (Hydra composes
  once, not per message);
- a node's data (its partition or its file, split and preprocessed): by that and the
  node config;
- the compiled Keras model: by the run config. Every call sets its weights from the
  message and resets its optimizer to the fresh state (`reset_optimizer`), so nothing
  carries over between calls, partitions or runs; Keras keeps its traced functions;
- the HE secret context: by its path (fl_app.fl.modes.he).

All are bounded LRU caches; `clear()` empties them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import keras
from flwr.app import Context
from flwr.client import Client

from fl_app.config.compose import RunKey, config_for, run_key
from fl_app.config.schema import AppConfig
from fl_app.config.task import federated_statistics
from fl_app.fl.client import KerasClient
from fl_app.fl.factory import new_model, node_data
from fl_app.fl.faults import FaultPlan, FaultyClient
from fl_app.fl.hostile import HostileClient
from fl_app.fl.logs import use_flower_handlers
from fl_app.fl.modes import mode_for
from fl_app.fl.modes.he import secret_context_at
from fl_app.fl.record_dp import RecordDP, ledger_place
from fl_app.ml.data import ClientData
from fl_app.ml.dpsgd import ClipAndNoise


@lru_cache(maxsize=1024)
def data_for(
    key: RunKey, search_path: Path | None, node: tuple[tuple[str, Any], ...]
) -> tuple[ClientData, int]:
    """A node's data and training seed (`factory.node_data`), once per node config."""
    return node_data(config_for(key, search_path), dict(node))


@lru_cache(maxsize=2)
def model_for(key: RunKey, search_path: Path | None) -> keras.Model:
    """The run's compiled model, shared by the calls of this process one at a time."""
    return new_model(config_for(key, search_path))


def clear() -> None:
    """Forget everything this process built (tests; a worker never needs it)."""
    for cached in (config_for, data_for, model_for, secret_context_at):
        cached.cache_clear()


def record_dp_of(cfg: AppConfig, context: Context, data: ClientData) -> RecordDP:
    """dp.* for DP-SGD, and where this holder keeps its ledger."""
    dp = cfg.dp
    return RecordDP(
        clip_norm=dp.clip_norm,
        noise_multiplier=dp.noise_multiplier,
        delta=dp.delta,
        target_epsilon=dp.target_epsilon,
        max_epsilon=dp.max_epsilon,
        planned_rounds=cfg.num_rounds,
        ledger_at=ledger_place(context.node_config, data.train),
        run=str(context.run_id),
    )


def client_fn(context: Context, search_path: Path | None = None) -> Client:
    """Build the client for the node Flower is running this ClientApp on.

    `search_path`: a user app's own `conf/`, composed with fl_app's.
    """
    key = run_key(context.run_config)
    cfg = config_for(key, search_path)
    use_flower_handlers(cfg.log_level)
    data, node_seed = data_for(key, search_path, run_key(context.node_config))
    client = KerasClient(
        lambda: model_for(key, search_path),
        data,
        codec=mode_for(cfg).codec(cfg, dict(context.node_config)),
        train=cfg.train,
        seed=node_seed,
        dp=ClipAndNoise(cfg.dp.clip_norm, cfg.dp.noise_multiplier)
        if cfg.dp.enabled and cfg.dp.level == "client"
        else None,
        record_dp=record_dp_of(cfg, context, data)
        if cfg.dp.enabled and cfg.dp.level == "record"
        else None,
        federated_statistics=federated_statistics(cfg),
    )
    fault = cfg.fault
    if fault.hostile and int(context.node_config.get("partition-id", -1)) == 0:
        return HostileClient(client, fault.hostile, cfg.privacy.name == "he").to_client()
    if fault.fail_fraction > 0 or fault.corrupt_fraction > 0:
        plan = FaultPlan.for_node(
            dict(context.node_config),
            fail=fault.fail_fraction,
            corrupt=fault.corrupt_fraction,
            seed=fault.seed,
        )
        return FaultyClient(client, plan).to_client()
    return client.to_client()
