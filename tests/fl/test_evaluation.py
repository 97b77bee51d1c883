"""strategy.evaluate_with_fit on the client: the evaluation it sends with its update is
the one a separate evaluate message gets, and it changes nothing of the training."""

from __future__ import annotations

import numpy as np
import pytest
from clients import keras_client

from fl_app.fl.factory import new_model
from fl_app.fl.protocol import EVALUATE_FIRST_KEY, PRIOR_EXAMPLES, ROUND_KEY
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
