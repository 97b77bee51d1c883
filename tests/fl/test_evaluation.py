"""strategy.evaluate_with_fit on the client: the evaluation it sends with its update is
the one a separate evaluate message gets, and it changes nothing of the training."""

from __future__ import annotations

import numpy as np
import pytest
from clients import keras_client

from fl_app.fl.factory import new_model
from fl_app.fl.protocol import EVALUATE_FIRST_KEY, PRIOR_EXAMPLES, ROUND_KEY
from fl_app.ml.data import Split
from fl_app.ml.models import weights_of


@pytest.fixture(scope="module")
def client_and_weights(holder_data):
    cfg, data = holder_data
    client = keras_client(lambda: new_model(cfg), data, local_epochs=1, batch_size=16, seed=1)
    return client, weights_of(new_model(cfg))


def test_the_prior_evaluation_equals_an_evaluate_of_the_same_weights(client_and_weights):
    client, weights = client_and_weights
    loss, examples, metrics = client.evaluate(weights, {})
    _, _, fit_metrics = client.fit(weights, {ROUND_KEY: 2, EVALUATE_FIRST_KEY: True})
    assert fit_metrics[PRIOR_EXAMPLES] == examples
    assert fit_metrics["prior_loss"] == pytest.approx(loss)
    assert fit_metrics["prior_accuracy"] == pytest.approx(metrics["accuracy"])


def test_evaluating_first_changes_nothing_of_the_training(client_and_weights):
    client, weights = client_and_weights
    plain, n, plain_metrics = client.fit(weights, {ROUND_KEY: 2})
    first, m, _ = client.fit(weights, {ROUND_KEY: 2, EVALUATE_FIRST_KEY: True})
    assert n == m and not any(key.startswith("prior_") for key in plain_metrics)
    for a, b in zip(plain, first, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        (["task=breast_cancer", "task.objective.loss=categorical_crossentropy",
          "task.objective.metrics=[accuracy,auc,precision,recall]"],
         ("accuracy", "auc", "precision", "recall")),
        (["task=diabetes"], ("mae", "r2_score")),
    ],
)  # fmt: skip
def test_federated_metrics_are_the_values_on_the_pooled_test_splits(overrides, names):
    """Three real holders evaluate one model; the server's combination of their replies
    equals Keras on their concatenated test splits (AUC, precision, R² are not means)."""
    from clients import client_of

    from fl_app.config import compose_config
    from fl_app.fl.evaluation import MEAN_OF_CLIENTS, PooledMetrics
    from fl_app.ml.models import evaluate

    cfg = compose_config(overrides)
    clients = [client_of(cfg, pid) for pid in range(3)]
    weights = weights_of(clients[0].net)
    replies = [client.evaluate(weights, {}) for client in clients]
    combined = PooledMetrics(new_model(cfg))([(n, metrics) for _, n, metrics in replies])
    assert MEAN_OF_CLIENTS not in combined
    tests = [client.data.test for client in clients]
    pooled = evaluate(
        clients[0].net,
        Split(np.concatenate([t.x for t in tests]), np.concatenate([t.y for t in tests])),
        batch_size=16,
    )
    means = {k: np.average([m[k] for _, _, m in replies], weights=[n for _, n, _ in replies])
             for k in names}  # fmt: skip
    for name in names:
        assert combined[name] == pytest.approx(pooled[name], abs=1e-6), name
    assert any(abs(means[k] - pooled[k]) > 1e-4 for k in names)  # a mean would not do


def test_without_metric_states_the_metrics_are_means_and_said_to_be(holder_data):
    from fl_app.fl.evaluation import MEAN_OF_CLIENTS, PooledMetrics

    cfg, _ = holder_data
    combined = PooledMetrics(new_model(cfg))([(10, {"accuracy": 0.5}), (30, {"accuracy": 0.9})])
    assert combined == {"accuracy": pytest.approx(0.8), MEAN_OF_CLIENTS: "accuracy"}
