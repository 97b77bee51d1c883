"""Federated statistics: the holders' sums, added under the privacy mode (in the clear,
or as ciphertexts the server never decrypts), give every holder the pooled data's mean
and std; a malformed contribution is dropped with its reason."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from clients import he_client, keras_client

from fl_app.crypto.keys import secret_bytes
from fl_app.fl.protocol import STATS_KEY, STATS_TOTAL_KEY
from fl_app.fl.statistics import HEDigitSum, PlainDigitSum, ServerStatistics
from fl_app.ml.data import ClientData, Split
from fl_app.ml.statistics import moments_length

SCALES = np.array([1.0, 100.0, 1e4, 0.01])
OFFSETS = np.array([5.0, 2000.0, -3e4, 0.5])


def _model() -> keras.Model:
    inputs = keras.Input((4,))
    net = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    net.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return net


@pytest.fixture(scope="module")
def holders():
    rng = np.random.default_rng(2)
    data = []
    for size, shift in ((40, 0.0), (90, 1.0), (150, -2.0)):  # unlike holders
        x = (rng.normal(shift, 1.0, size=(size, 4)) * SCALES + OFFSETS).astype(np.float32)
        y = rng.integers(0, 2, size=size)
        data.append(ClientData(Split(x[: size - 10], y[: size - 10]), Split(x[-10:], y[-10:])))
    return data


def _clients(privacy, keys, holders, tmp_path):
    if privacy == "none":
        return [keras_client(_model, d, federated_statistics=True) for d in holders]
    preset, secret, _ = keys
    path = tmp_path / "secret.ctx"
    path.write_bytes(secret_bytes(secret))
    return [he_client(_model, d, preset=preset, secret_context=str(path),
                      federated_statistics=True) for d in holders]  # fmt: skip


def _server(privacy, keys, tmp_path) -> ServerStatistics:
    statistics = ServerStatistics(moments_length(_model()), tmp_path)
    if privacy == "none":
        statistics.attach(PlainDigitSum(statistics.length))
    else:
        preset, _, public = keys
        statistics.attach(HEDigitSum(public, preset, statistics.length, "run", {}))
    return statistics


@pytest.mark.parametrize("privacy", ["none", "he"])
def test_every_holder_scales_with_the_pooled_mean_and_std(privacy, keys, holders, tmp_path):
    clients = _clients(privacy, keys, holders, tmp_path)
    server = _server(privacy, keys, tmp_path)
    for index, client in enumerate(clients):
        answer = client.get_properties(server.request())
        assert isinstance(answer[STATS_KEY], bytes)
        server.take(f"c{index}", answer, len(client.data.train))
    server.close()
    config = server.config()
    assert isinstance(config[STATS_TOTAL_KEY], bytes)
    assert (tmp_path / "statistics.json").stat().st_mode & 0o777 == 0o600
    if privacy == "he":
        assert server.values() is None  # the server cannot read them
    pooled = np.concatenate([d.train.x for d in holders]).astype(np.float64)
    mean, std = pooled.mean(axis=0), pooled.std(axis=0)
    for client, raw in zip(clients, holders, strict=True):
        client._scale(config)
        client._scale(config)  # a second instruction scales the raw data again, not twice
        expected = (raw.train.x - mean) / (std + 1e-6)
        np.testing.assert_allclose(client.data.train.x, expected, rtol=1e-5, atol=1e-5)
    # resumed: the saved total, not a new sum
    again = ServerStatistics(moments_length(_model()), tmp_path)
    assert again.config() == config and again.request() == {}


@pytest.mark.parametrize("privacy", ["none", "he"])
def test_a_malformed_contribution_is_dropped_with_its_reason(
    privacy, keys, holders, tmp_path, caplog
):
    clients = _clients(privacy, keys, holders, tmp_path)
    server = _server(privacy, keys, tmp_path)
    honest = clients[0].get_properties(server.request())
    forged = {
        "short": {STATS_KEY: honest[STATS_KEY][:-8]},
        "none": {},
        "garbage": {STATS_KEY: b"\xff" * len(honest[STATS_KEY])},
    }
    for cid, answer in forged.items():
        server.take(cid, answer, len(holders[0].train))
    assert server.holders == 0
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 3 and "sent no statistics" in dropped[1]
    if privacy == "none":  # the server sees the count: it must be the announced one
        server.take("liar", honest, len(holders[0].train) + 1)
        assert server.holders == 0
    with pytest.raises(RuntimeError, match="no client sent usable federated statistics"):
        server.close()
    server.take("c0", honest, len(holders[0].train))
    server.close()
    assert server.holders == 1
