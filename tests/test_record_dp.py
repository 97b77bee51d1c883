"""Record-level DP: the DP-SGD step (per-example gradients, clipping, noise, sensitivity)
with a real Keras model, and each holder's accounting against dp-accounting itself."""

from __future__ import annotations

import dp_accounting
import keras
import numpy as np
import pytest
import tensorflow as tf
from dp_accounting.rdp import rdp_privacy_accountant
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fl_app.ml.dpsgd import DPSGD, DPSGDSettings, dpsgd_for
from fl_app.privacy.records import (
    ORDERS,
    BudgetExceeded,
    HolderLedger,
    calibrated_noise,
    spent_epsilon,
)


def small_model(batch_norm: bool = False) -> keras.Model:
    inputs = keras.Input((4,))
    x = keras.layers.Dense(5, activation="tanh")(inputs)
    if batch_norm:
        x = keras.layers.BatchNormalization()(x)
    net = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    net.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return net


@pytest.fixture(scope="module")
def trainer():
    keras.utils.set_random_seed(0)
    return dpsgd_for(small_model())


def batch(size=8, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, scale, (size, 4)).astype(np.float32), rng.integers(0, 3, size))


def test_per_example_gradients_equal_a_loop_over_examples(trainer):
    x, y = batch()
    vectorised = trainer.per_example_gradients(x, y)
    for i in range(len(x)):
        with tf.GradientTape() as tape:
            loss = keras.losses.sparse_categorical_crossentropy(
                y[i : i + 1], trainer.net(x[i : i + 1])
            )
        for mine, single in zip(
            vectorised, tape.gradient(loss, trainer.net.trainable_variables), strict=True
        ):
            np.testing.assert_allclose(mine[i].numpy(), single.numpy(), rtol=1e-5, atol=1e-6)


def clipped(trainer, x, y, keep):
    mask = tf.constant(np.asarray(keep, np.float32))
    return [g.numpy() for g in trainer._clipped_sum(x, y, mask)]


def norm(arrays):
    return float(np.sqrt(sum(np.sum(np.square(a)) for a in arrays)))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(clip=st.floats(1e-3, 10.0), scale=st.floats(0.01, 100.0), index=st.integers(0, 7))
def test_every_clipped_gradient_has_norm_at_most_the_bound(trainer, clip, scale, index):
    trainer.configure(DPSGDSettings(clip, 0.0))
    x, y = batch(scale=scale)
    one = np.eye(8)[index]
    assert norm(clipped(trainer, x, y, one)) <= clip * (1 + 1e-5)


def test_one_record_more_or_less_moves_the_noiseless_sum_by_at_most_the_bound(trainer):
    trainer.configure(DPSGDSettings(0.5, 0.0))
    x, y = batch(scale=10.0)
    every, without = np.ones(8), np.r_[np.ones(7), 0.0]
    moved = [
        a - b
        for a, b in zip(clipped(trainer, x, y, every), clipped(trainer, x, y, without), strict=True)
    ]
    assert 0 < norm(moved) <= 0.5 * (1 + 1e-5)


def test_the_noise_has_std_noise_multiplier_times_the_bound(trainer):
    trainer.configure(DPSGDSettings(0.7, 1.3))
    zeros = [tf.zeros((200, 500))]
    draws = trainer.noisy_mean(zeros, 1.0)[0].numpy()
    assert np.std(draws) == pytest.approx(1.3 * 0.7, rel=0.02)
    assert abs(np.mean(draws)) < 0.01


def test_training_takes_the_planned_steps_and_changes_the_model(trainer):
    x, y = batch(size=64)
    before = [v.numpy().copy() for v in trainer.net.trainable_variables]
    steps = trainer.train(x, y, DPSGDSettings(1.0, 1.0), epochs=2, batch_size=16)
    assert steps == 2 * 4
    assert any(
        not np.allclose(a, v.numpy())
        for a, v in zip(before, trainer.net.trainable_variables, strict=True)
    )


def test_batch_normalization_is_refused_with_the_layer_named():
    with pytest.raises(
        ValueError, match=r"'batch_normalization.*' \(BatchNormalization\) computes batch"
    ):
        DPSGD(small_model(batch_norm=True))


# ---------------------------------------------------------------- accounting


@pytest.mark.parametrize(
    ("q", "sigma", "steps"), [(0.28, 1.1, 24), (0.01, 0.8, 3000), (1.0, 4.0, 5)]
)
def test_epsilon_is_dp_accountings_for_the_same_sampling_noise_and_steps(q, sigma, steps):
    accountant = rdp_privacy_accountant.RdpAccountant(ORDERS)
    step = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma))
    accountant.compose(step, steps)
    assert spent_epsilon(q, sigma, steps, 1e-5) == pytest.approx(accountant.get_epsilon(1e-5))


def test_more_rounds_spend_more_and_no_noise_has_no_bound():
    ledger = HolderLedger(0.25, 1.2, 1e-5)
    spent = [ledger.after(8 * r).epsilon for r in (1, 2, 3)]
    assert 0 < spent[0] < spent[1] < spent[2]
    assert spent_epsilon(0.25, 0.0, 8, 1e-5) == float("inf")
    assert HolderLedger(0.25, 1.2, 1e-5).epsilon == 0.0


@pytest.mark.parametrize("target", [1.0, 3.0, 8.0])
def test_the_calibrated_noise_lands_at_or_below_the_target(target):
    sigma = calibrated_noise(0.25, 40, target, 1e-5)
    assert spent_epsilon(0.25, sigma, 40, 1e-5) <= target
    assert spent_epsilon(0.25, sigma * 0.95, 40, 1e-5) > target  # and not far below it


def test_a_holder_refuses_to_train_past_its_budget():
    ledger = HolderLedger(0.25, 1.2, 1e-5).after(8)
    budget = ledger.epsilon * 1.2
    with pytest.raises(BudgetExceeded, match=r"past dp.max_epsilon=.*refusing to train"):
        ledger.after(8, max_epsilon=budget)
    assert ledger.after(8, max_epsilon=0).steps == 16  # 0: no budget set


# ---------------------------------------------------------------- a holder across rounds


@pytest.fixture(scope="module")
def holder_net(holder_data):
    from fl_app.fl.factory import new_model

    cfg, data = holder_data
    return cfg, data, new_model(cfg)


def holder(cfg, data, net, state, **dp):
    from fl_app.fl.client import KerasClient
    from fl_app.fl.record_dp import RecordDP

    settings = dict(clip_norm=1.0, noise_multiplier=1.0, delta=1e-5, target_epsilon=0.0,
                    max_epsilon=0.0, planned_rounds=3)  # fmt: skip
    record_dp = RecordDP(**{**settings, **dp}, state=state)
    return KerasClient(
        lambda: net, data, local_epochs=1, batch_size=16, seed=0, record_dp=record_dp
    )


def test_a_holders_ledger_grows_across_rounds_in_its_node_state(holder_net):
    from flwr.app import RecordDict

    cfg, data, net = holder_net
    state = RecordDict()  # Flower keeps one per node across a run's rounds
    weights = [w.copy() for w in net.get_weights()]
    spent = []
    for _ in range(3):
        _, n, metrics = holder(cfg, data, net, state).fit(weights, {})
        spent.append(metrics["dp_epsilon"])
        assert n == len(data.train) and "train_loss" not in metrics
    assert 0 < spent[0] < spent[1] < spent[2]
    steps = state["fl_app.dp-sgd"]["steps"]
    q = 16 / len(data.train)
    assert spent[2] == pytest.approx(spent_epsilon(q, 1.0, steps, 1e-5))


def test_target_epsilon_is_reached_over_the_planned_rounds_and_the_budget_refuses_more(
    holder_net,
):
    from flwr.app import RecordDict

    cfg, data, net = holder_net
    state, weights = RecordDict(), [w.copy() for w in net.get_weights()]
    client = holder(cfg, data, net, state, target_epsilon=3.0, max_epsilon=3.0, planned_rounds=2)
    spent = [client.fit(weights, {})[2]["dp_epsilon"] for _ in range(2)]
    assert spent[0] < spent[1] <= 3.0
    assert spent[1] == pytest.approx(3.0, rel=0.01)
    with pytest.raises(BudgetExceeded, match=r"dp\.max_epsilon=3"):
        client.fit(weights, {})


def test_the_server_keeps_every_holders_epsilon_and_the_summary_reports_the_largest():
    from fakes import fit_result
    from omegaconf import OmegaConf

    from fl_app.fl.results import holder_privacy
    from fl_app.privacy.report import record_report

    results = [
        fit_result("a", [np.zeros(1)], 10, dp_epsilon=1.5, dp_steps=8, dp_noise_multiplier=1.1),
        fit_result("b", [np.zeros(1)], 10, dp_epsilon=2.5, dp_steps=8, dp_noise_multiplier=0.9),
    ]
    stripped, spent = holder_privacy(results)
    assert all(not any(k.startswith("dp_") for k in res.metrics) for _, res in stripped)
    assert spent["dp_epsilon_max"] == 2.5
    rows = [{"round": 1, **spent}, {"round": 2, "dp_holder_epsilon": {"a": 3.0}}]
    dp = OmegaConf.create(
        {"level": "record", "delta": 1e-5, "clip_norm": 1.0, "noise_multiplier": 1.0,
         "target_epsilon": 0.0, "max_epsilon": 0.0}
    )  # fmt: skip
    report = record_report(rows, dp)
    assert report["per_holder_epsilon"] == {"a": 3.0, "b": 2.5}
    assert report["epsilon"] == 3.0 and report["per_holder_noise_multiplier"]["b"] == 0.9


def test_a_sample_larger_than_the_padded_batch_is_summed_in_parts(trainer, monkeypatch):
    from fl_app.ml import dpsgd

    trainer.configure(DPSGDSettings(0.5, 0.0))
    x, y = batch(size=8, scale=5.0)
    whole = clipped(trainer, x, y, np.ones(8))
    halves = [clipped(trainer, x[i : i + 4], y[i : i + 4], np.ones(4)) for i in (0, 4)]
    for w, a, b in zip(whole, *halves, strict=True):
        np.testing.assert_allclose(w, a + b, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(dpsgd, "capacity_for", lambda batch_size: 3)  # force several parts
    before = [v.numpy().copy() for v in trainer.net.trainable_variables]
    assert trainer.train(*batch(size=40), DPSGDSettings(1.0, 0.5), epochs=1, batch_size=16) == 2
    assert any(
        not np.allclose(a, v.numpy())
        for a, v in zip(before, trainer.net.trainable_variables, strict=True)
    )
