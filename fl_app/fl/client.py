"""The NumPyClient that wraps a Keras model, and the ClientApp's client_fn."""

from __future__ import annotations

import keras
from flwr.app import Context
from flwr.client import Client, NumPyClient
from flwr.common import NDArrays, Scalar
from omegaconf import DictConfig

from fl_app.config import load_config
from fl_app.ml.data import ClientData, PartitionSpec, load_client_data
from fl_app.ml.models import build_model, evaluate, train, weights_of

ROUND_KEY = "server-round"


class KerasClient(NumPyClient):
    """Trains and evaluates one holder's Keras model on data that never leaves it."""

    def __init__(
        self,
        net: keras.Model,
        data: ClientData,
        *,
        local_epochs: int,
        batch_size: int,
        seed: int,
    ) -> None:
        self.net = net
        self.data = data
        self.local_epochs = local_epochs
        self.batch_size = batch_size
        self.seed = seed

    def get_parameters(self, config: dict[str, Scalar]) -> NDArrays:
        return weights_of(self.net)

    def fit(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        self.net.set_weights(parameters)
        metrics = train(
            self.net,
            self.data.train,
            epochs=self.local_epochs,
            batch_size=self.batch_size,
            seed=self.seed + int(config.get(ROUND_KEY, 0)),
        )
        return weights_of(self.net), len(self.data.train), metrics

    def evaluate(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[float, int, dict[str, Scalar]]:
        self.net.set_weights(parameters)
        loss, accuracy = evaluate(self.net, self.data.test, batch_size=self.batch_size)
        return loss, len(self.data.test), {"accuracy": accuracy}


def partition_spec(cfg: DictConfig, num_partitions: int) -> PartitionSpec:
    """The partitioning the config asks for, over `num_partitions` clients."""
    return PartitionSpec(
        name=cfg.partition.name,
        num_partitions=num_partitions,
        alpha=float(cfg.partition.alpha),
        min_partition_size=int(cfg.partition.min_partition_size),
        self_balancing=bool(cfg.partition.self_balancing),
    )


def new_model(cfg: DictConfig) -> keras.Model:
    """The configured model, initialised from the run's seed."""
    return build_model(
        cfg.task.name,
        cfg.task.model,
        optimizer=cfg.train.optimizer,
        learning_rate=float(cfg.train.learning_rate),
        seed=int(cfg.seed),
    )


def client_fn(context: Context) -> Client:
    """Build the client for the node Flower is running this ClientApp on."""
    cfg = load_config(context.run_config)
    partition_id = int(context.node_config["partition-id"])
    num_partitions = int(context.node_config["num-partitions"])
    data = load_client_data(
        cfg.task.name,
        partition_spec(cfg, num_partitions),
        partition_id,
        server_test_fraction=float(cfg.task.server_test_fraction),
        client_test_fraction=float(cfg.task.client_test_fraction),
        seed=int(cfg.seed),
    )
    client = KerasClient(
        new_model(cfg),
        data,
        local_epochs=int(cfg.train.local_epochs),
        batch_size=int(cfg.train.batch_size),
        seed=int(cfg.seed) + 10_007 * (partition_id + 1),
    )
    return client.to_client()
