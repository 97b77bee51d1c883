"""Builds what the apps need from the composed config: models and clients."""

from __future__ import annotations

import zlib
from functools import partial
from pathlib import Path

import keras
from flwr.app import Context
from flwr.client import Client
from omegaconf import DictConfig

from fl_app.config import load_config
from fl_app.crypto.presets import get_preset
from fl_app.dp import DPSettings
from fl_app.fl.client import KerasClient
from fl_app.fl.faults import FaultPlan, FaultyClient
from fl_app.fl.he_client import HEKerasClient
from fl_app.fl.logs import use_flower_handlers
from fl_app.ml.data import ClientData, PartitionSpec, load_client_data, load_node_data
from fl_app.ml.models import build_model
from fl_app.node_config import NODE_DATA_KEY, NODE_SECRET_KEY


def new_model(cfg: DictConfig) -> keras.Model:
    """The configured model, initialised from the run's seed."""
    return build_model(
        cfg.task.name,
        cfg.task.model,
        optimizer=cfg.train.optimizer,
        learning_rate=float(cfg.train.learning_rate),
        seed=int(cfg.seed),
    )


def node_data(cfg: DictConfig, node_config: dict) -> tuple[ClientData, int]:
    """This node's data and training seed.

    A deployed SuperNode reads only its own file (node config `data-path`); a simulated
    one takes its partition of the bundled data set (`partition-id`, `num-partitions`).
    """
    if NODE_DATA_KEY in node_config:
        path = Path(str(node_config[NODE_DATA_KEY])).expanduser()
        data = load_node_data(
            path,
            cfg.task.name,
            client_test_fraction=float(cfg.task.client_test_fraction),
            seed=int(cfg.seed),
        )
        return data, int(cfg.seed) + zlib.crc32(str(path).encode())
    partition_id = int(node_config["partition-id"])
    data = load_client_data(
        cfg.task.name,
        PartitionSpec.from_config(cfg.partition, int(node_config["num-partitions"])),
        partition_id,
        server_test_fraction=float(cfg.task.server_test_fraction),
        client_test_fraction=float(cfg.task.client_test_fraction),
        seed=int(cfg.seed),
    )
    return data, int(cfg.seed) + 10_007 * (partition_id + 1)


def client_fn(context: Context) -> Client:
    """Build the client for the node Flower is running this ClientApp on."""
    use_flower_handlers()
    cfg = load_config(context.run_config)
    data, node_seed = node_data(cfg, context.node_config)
    settings = {
        "local_epochs": int(cfg.train.local_epochs),
        "batch_size": int(cfg.train.batch_size),
        "seed": node_seed,
        "dp": DPSettings(float(cfg.dp.clip_norm), float(cfg.dp.noise_multiplier))
        if cfg.dp.enabled
        else None,
    }
    if cfg.strategy.name == "he":
        client = HEKerasClient(
            partial(new_model, cfg),
            data,
            preset=get_preset(cfg.he.preset),
            secret_context=cfg.he.secret_context
            or str(context.node_config.get(NODE_SECRET_KEY, "")),
            **settings,
        )
    else:
        client = KerasClient(partial(new_model, cfg), data, **settings)
    if cfg.fault.fail_fraction > 0 or cfg.fault.corrupt_fraction > 0:
        plan = FaultPlan.for_node(
            dict(context.node_config),
            fail=float(cfg.fault.fail_fraction),
            corrupt=float(cfg.fault.corrupt_fraction),
            seed=int(cfg.fault.seed),
        )
        return FaultyClient(client, plan).to_client()
    return client.to_client()
