"""+experiment=fedsgd: one round is one step of distributed gradient descent, checked by hand."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from clients import keras_client
from fakes import FakeProxy
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from strategies import plain_fedavg

from fl_app.config import compose_config
from fl_app.config.task import data_spec
from fl_app.fl.factory import new_model
from fl_app.ml.data import PartitionSpec, load_client_data
from fl_app.ml.models import weights_of
from fl_app.run.history import RunHistory


def test_one_fedsgd_round_is_theta_minus_lr_times_the_weighted_mean_gradient():
    cfg = compose_config(["task=diabetes", "+experiment=fedsgd", "train.learning_rate=0.1"])
    assert (cfg.train.optimizer, cfg.train.local_epochs) == ("sgd", 1)
    theta = weights_of(new_model(cfg))
    clients, results = [], []
    for pid in range(3):
        data = load_client_data(
            data_spec(cfg.task), PartitionSpec("iid", 3), pid,
            server_test_fraction=0.2, client_test_fraction=0.2, seed=int(cfg.seed),
        )  # fmt: skip
        client = keras_client(
            lambda: new_model(cfg), data, local_epochs=1, batch_size=int(cfg.train.batch_size),
            seed=pid,
        )  # fmt: skip
        weights, n, _ = client.fit(theta, {})
        clients.append(client)
        results.append((FakeProxy(str(pid)), FitRes(Status(Code.OK, ""),
                        ndarrays_to_parameters(weights), n, {})))  # fmt: skip
    strategy = plain_fedavg(history=RunHistory(), min_fit_clients=3)
    aggregate, _ = strategy.aggregate_fit(1, results, [])

    # by hand: each client's full-batch gradient of its mean loss at theta
    net = new_model(cfg)
    net.set_weights(theta)
    total = sum(len(c.data.train) for c in clients)
    mean_gradient = [np.zeros_like(w, dtype=np.float64) for w in theta]
    for client in clients:
        with tf.GradientTape() as tape:
            prediction = net(client.data.train.x, training=True)
            loss = keras.losses.MeanSquaredError()(client.data.train.y, prediction)
        for acc, g in zip(mean_gradient, tape.gradient(loss, net.trainable_weights), strict=True):
            acc += len(client.data.train) / total * np.asarray(g, dtype=np.float64)
    expected = [w - 0.1 * g for w, g in zip(theta, mean_gradient, strict=True)]
    for got, want in zip(parameters_to_ndarrays(aggregate), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
