"""Exact federated metrics: the summed Keras metric states of holders are the states of
the pooled data, and a metric whose state is not a sum over examples is said to be so."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fl_app.ml.metric_states import MetricStates, server_metric_states


def _model(metrics: list) -> keras.Model:
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    net = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    net.compile("adam", "binary_crossentropy", metrics=metrics)
    return net


def _metrics() -> list:
    return [
        "accuracy",
        keras.metrics.AUC(name="auc"),
        keras.metrics.Precision(name="precision"),
        keras.metrics.R2Score(name="r2"),
        keras.metrics.PearsonCorrelation(name="pearson"),
    ]


@pytest.fixture(scope="module")
def holders():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(301, 4)).astype("float32")
    y = (x[:, 0] + rng.normal(size=301) > 0).astype("float32").reshape(-1, 1)
    return x, y, [slice(0, 41), slice(41, 170), slice(170, 301)]  # unequal, odd sizes


def test_summed_states_give_the_pooled_values(holders):
    x, y, parts = holders
    net = _model(_metrics())
    states, names = [], None
    for part in parts:
        net.evaluate(x[part], y[part], batch_size=32, verbose=0)
        reader = MetricStates(net)
        state = reader.state()
        usable = reader.summable(state, len(y[part]))
        names = usable if names is None else names & usable
        states.append(state)
    assert names == {"loss", "accuracy", "auc", "precision", "r2"}  # not the per-batch one
    pooled = net.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    server = server_metric_states(_model(_metrics()))  # a fresh model that saw no data
    assert server is not None and server.signature == reader.signature
    values = server.pooled(sum(states), names)
    for name in names:
        assert values[name] == pytest.approx(pooled[name], abs=1e-6), name


def test_a_state_that_is_not_a_sum_over_the_examples_is_not_pooled(holders):
    x, y, _ = holders
    net = _model(["accuracy", keras.metrics.AUC(name="auc")])
    net.evaluate(x, y, verbose=0)
    reader = MetricStates(net)
    state = reader.state()
    assert reader.summable(state, len(y)) == {"loss", "accuracy", "auc"}
    assert "accuracy" not in reader.summable(state, len(y) + 1)  # counts must match
    inflated = state.copy()
    inflated[6] = 10 * len(y)  # a true-positive tally larger than the examples allow
    assert "auc" not in reader.summable(inflated, len(y))
    nan = state.copy()
    nan[0] = np.nan
    assert "loss" not in reader.summable(nan, len(y))
    with pytest.raises(ValueError, match="metric state of 3 values, expected"):
        reader.summable(state[:3], len(y))
