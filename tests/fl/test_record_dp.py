"""Record-level DP: the DP-SGD step (per-example gradients, clipping, noise, sensitivity)
with a real Keras model, and each holder's accounting against dp-accounting itself."""

from __future__ import annotations

import dp_accounting
import keras
import numpy as np
import pytest
import tensorflow as tf
from clients import keras_client
from dp_accounting.rdp import rdp_privacy_accountant
from dpsgd_helpers import clipped, norm, small_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fl_app.ml.dpsgd import DPSGD, ClipAndNoise, dpsgd_for
from fl_app.ml.per_record import refuse_untrained_state
from fl_app.privacy.record_level import (
    ORDERS,
    BudgetExceeded,
    Steps,
    calibrated_noise,
    epsilon_of,
    spent_epsilon,
)


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


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(clip=st.floats(1e-3, 10.0), scale=st.floats(0.01, 100.0), index=st.integers(0, 7))
def test_every_clipped_gradient_has_norm_at_most_the_bound(trainer, clip, scale, index):
    trainer.configure(ClipAndNoise(clip, 0.0))
    x, y = batch(scale=scale)
    one = np.eye(8)[index]
    assert norm(clipped(trainer, x, y, one)) <= clip * (1 + 1e-5)


def test_one_record_more_or_less_moves_the_noiseless_sum_by_at_most_the_bound(trainer):
    trainer.configure(ClipAndNoise(0.5, 0.0))
    x, y = batch(scale=10.0)
    every, without = np.ones(8), np.r_[np.ones(7), 0.0]
    moved = [
        a - b
        for a, b in zip(clipped(trainer, x, y, every), clipped(trainer, x, y, without), strict=True)
    ]
    assert 0 < norm(moved) <= 0.5 * (1 + 1e-5)


def test_the_noise_has_std_noise_multiplier_times_the_bound(trainer):
    trainer.configure(ClipAndNoise(0.7, 1.3))
    zeros = [tf.zeros((200, 500))]
    draws = trainer.noisy_mean(zeros, 1.0)[0].numpy()
    assert np.std(draws) == pytest.approx(1.3 * 0.7, rel=0.02)
    assert abs(np.mean(draws)) < 0.01


def test_training_takes_the_planned_steps_and_changes_the_model(trainer):
    x, y = batch(size=64)
    before = [v.numpy().copy() for v in trainer.net.trainable_variables]
    steps = trainer.train(x, y, ClipAndNoise(1.0, 1.0), epochs=2, batch_size=16)
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


class Block(keras.layers.Layer):
    """A user's custom layer that hides a BatchNormalization (not in `.layers`)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(4)
        self.norm = keras.layers.BatchNormalization()

    def call(self, x, training=None):
        return self.norm(self.dense(x), training=training)


class Counter(keras.layers.Layer):
    """A custom layer whose training pass moves a non-trainable weight (no BatchNorm)."""

    def build(self, shape):
        self.seen = self.add_weight(shape=(), initializer="zeros", trainable=False)

    def call(self, x, training=None):
        if training:
            self.seen.assign_add(keras.ops.cast(keras.ops.shape(x)[0], "float32"))
        return x


def model_with(layer) -> keras.Model:
    inputs = keras.Input((4,))
    net = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(layer(inputs)))
    net.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return net


def test_a_batch_normalization_nested_in_a_custom_layer_is_refused():
    with pytest.raises(ValueError, match=r"\(BatchNormalization\) computes batch statistics"):
        DPSGD(model_with(Block()))


def test_a_model_whose_training_pass_moves_a_sent_weight_is_refused_by_what_it_does():
    x, _ = batch()
    net = model_with(Counter())
    before = [w.copy() for w in net.get_weights()]
    with pytest.raises(ValueError, match=r"non-trainable weights \['counter/variable'\]"):
        refuse_untrained_state(net, x)
    for a, b in zip(before, net.get_weights(), strict=True):  # the check restored them
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="non-trainable weights"):  # and DP-SGD checks it
        dpsgd_for(net).train(x, batch()[1], ClipAndNoise(1.0, 1.0), epochs=1, batch_size=4)
    # Dropout draws from a seed generator, which is not sent: allowed.
    refuse_untrained_state(model_with(keras.layers.Dropout(0.5)), x)


# ---------------------------------------------------------------- accounting


def accountants_epsilon(parts, delta=1e-5) -> float:
    """dp_accounting called directly, one compose per (rate, noise, steps)."""
    accountant = rdp_privacy_accountant.RdpAccountant(ORDERS)
    for q, sigma, steps in parts:
        step = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma))
        accountant.compose(step, steps)
    return accountant.get_epsilon(delta)


@pytest.mark.parametrize(
    ("q", "sigma", "steps"), [(0.28, 1.1, 24), (0.01, 0.8, 3000), (1.0, 4.0, 5)]
)
def test_epsilon_is_dp_accountings_for_the_same_sampling_noise_and_steps(q, sigma, steps):
    assert spent_epsilon(q, sigma, steps, 1e-5) == pytest.approx(
        accountants_epsilon([(q, sigma, steps)])
    )


def test_rounds_at_different_rates_and_noise_compose():
    parts = [(0.28, 1.1, 24), (0.14, 2.0, 48), (0.28, 1.1, 8)]
    assert epsilon_of([Steps(*p) for p in parts], 1e-5) == pytest.approx(accountants_epsilon(parts))


def test_more_rounds_spend_more_and_no_noise_has_no_bound():
    spent = [spent_epsilon(0.25, 1.2, 8 * r, 1e-5) for r in (1, 2, 3)]
    assert 0 < spent[0] < spent[1] < spent[2]
    assert spent_epsilon(0.25, 0.0, 8, 1e-5) == float("inf")
    assert epsilon_of([], 1e-5) == 0.0


@pytest.mark.parametrize("target", [1.0, 3.0, 8.0])
def test_the_calibrated_noise_lands_at_or_below_the_target(target):
    sigma = calibrated_noise(0.25, 40, target, 1e-5)
    assert spent_epsilon(0.25, sigma, 40, 1e-5) <= target
    assert spent_epsilon(0.25, sigma * 0.95, 40, 1e-5) > target  # and not far below it


def test_calibration_counts_what_was_already_spent():
    spent = (Steps(0.25, calibrated_noise(0.25, 40, 1.5, 1e-5), 40),)  # ε 1.5 so far
    sigma = calibrated_noise(0.25, 40, 3.0, 1e-5, spent)
    total = epsilon_of([*spent, Steps(0.25, sigma, 40)], 1e-5)
    assert total <= 3.0 and total == pytest.approx(3.0, rel=0.01)
    assert sigma > calibrated_noise(0.25, 40, 3.0, 1e-5)  # less room left: more noise
    with pytest.raises(BudgetExceeded, match=r"already spent ε=.* reaches dp.target_epsilon=1"):
        calibrated_noise(0.25, 40, 1.0, 1e-5, spent)


def test_a_target_the_accountant_cannot_calibrate_is_a_clear_error():
    with pytest.raises(ValueError, match=r"dp.target_epsilon=1e\+06 cannot be calibrated"):
        calibrated_noise(0.14, 14, 1e6, 1e-5)


# ---------------------------------------------------------------- a holder across rounds


@pytest.fixture(scope="module")
def holder_net(holder_data):
    from fl_app.fl.factory import new_model

    cfg, data = holder_data
    return cfg, data, new_model(cfg)


def holder(data, net, ledger, **dp):
    from fl_app.fl.record_dp import RecordDP

    settings = dict(clip_norm=1.0, noise_multiplier=1.0, delta=1e-5, target_epsilon=0.0,
                    max_epsilon=0.0, planned_rounds=3)  # fmt: skip
    record_dp = RecordDP(**{**settings, **dp}, ledger_at=lambda config: ledger, run="7")
    return keras_client(
        lambda: net, data, local_epochs=1, batch_size=16, seed=0, record_dp=record_dp
    )


def fit(client, net, rnd):
    weights = [w.copy() for w in net.get_weights()]
    return client.fit(weights, {"server-round": rnd})


def test_a_holders_ledger_file_grows_across_rounds_and_new_clients_read_it(holder_net, tmp_path):
    from fl_app.privacy.ledger import PrivacyLedger

    _, data, net = holder_net
    path = tmp_path / "ledger.json"
    spent = []
    for rnd in (1, 2, 3):  # a new client every round: as after a restart or a resume
        _, n, metrics = fit(holder(data, net, path), net, rnd)
        spent.append(metrics["dp_epsilon"])
        assert n == len(data.train) and "train_loss" not in metrics
    assert 0 < spent[0] < spent[1] < spent[2]
    ledger = PrivacyLedger.open(path)
    assert [b.round for b in ledger.bookings] == [1, 2, 3]
    assert metrics["dp_holder"] == ledger.holder and metrics["dp_steps"] == ledger.steps
    q = 16 / len(data.train)
    assert spent[2] == pytest.approx(accountants_epsilon([(q, 1.0, ledger.steps)]))
    assert path.stat().st_mode & 0o777 == 0o600


def test_target_epsilon_is_reached_over_the_planned_rounds_and_is_a_cap(holder_net, tmp_path):
    from fl_app.privacy.ledger import PrivacyLedger

    _, data, net = holder_net
    path = tmp_path / "ledger.json"
    client = holder(data, net, path, target_epsilon=3.0, planned_rounds=2)
    spent = [fit(client, net, rnd)[2]["dp_epsilon"] for rnd in (1, 2)]
    assert spent[0] < spent[1] <= 3.0
    assert spent[1] == pytest.approx(3.0, rel=0.01)
    with pytest.raises(BudgetExceeded, match=r"past dp\.target_epsilon=3"):
        fit(client, net, 3)  # a round past the plan (no max_epsilon): refused
    # Extending the plan to 4 rounds: the rest of the target is what is left (a sliver),
    # so the extra rounds train at far more noise and the holder stays at 3.
    longer = holder(data, net, path, target_epsilon=3.0, planned_rounds=4)
    _, _, extended = fit(longer, net, 3)
    assert spent[1] < extended["dp_epsilon"] <= 3.0
    first_noise = PrivacyLedger.open(path).bookings[0].noise_multiplier
    assert extended["dp_noise_multiplier"] > 5 * first_noise
    larger = holder(data, net, path, max_epsilon=3.5, noise_multiplier=4.0)  # a new budget
    assert 3.0 < fit(larger, net, 4)[2]["dp_epsilon"] <= 3.5  # counts the whole ledger


def test_a_budget_counts_every_round_in_the_ledger(holder_net, tmp_path):
    _, data, net = holder_net
    path = tmp_path / "ledger.json"
    first = fit(holder(data, net, path), net, 1)[2]["dp_epsilon"]
    budget = first * 1.1  # room for less than one more round
    with pytest.raises(BudgetExceeded, match=r"past dp\.max_epsilon=.*refusing to train"):
        fit(holder(data, net, path, max_epsilon=budget), net, 2)


def test_an_update_that_never_leaves_is_still_booked(holder_net, tmp_path):
    """A crash between training and sending over-counts, never under-counts."""
    from fl_app.privacy.ledger import PrivacyLedger

    _, data, net = holder_net
    path = tmp_path / "ledger.json"
    client = holder(data, net, path)

    def crash(*args):
        raise RuntimeError("the node died before sending")

    client.codec.encode = crash
    with pytest.raises(RuntimeError, match="died before sending"):
        fit(client, net, 1)
    assert len(PrivacyLedger.open(path).bookings) == 1


def test_an_unreadable_ledger_is_refused_and_left_as_it_was(holder_net, tmp_path):
    from fl_app.privacy.ledger import LedgerError

    _, data, net = holder_net
    path = tmp_path / "ledger.json"
    for content in ("{not json", '{"format": 1, "holder": "x"}', '{"format": 99}', ""):
        path.write_text(content)
        with pytest.raises(LedgerError, match=r"cannot be read .* refusing to train"):
            fit(holder(data, net, path), net, 1)
        assert path.read_text() == content


def test_no_noise_reports_an_unbounded_epsilon_that_is_valid_json(holder_net, tmp_path):
    import json

    from fakes import fit_result
    from omegaconf import OmegaConf

    from fl_app.fl.results import holder_privacy
    from fl_app.privacy.report import record_report

    _, data, net = holder_net
    _, _, metrics = fit(holder(data, net, tmp_path / "l.json", noise_multiplier=0.0), net, 1)
    assert metrics["dp_epsilon"] == float("inf")
    _, spent = holder_privacy([fit_result("a", [np.zeros(1)], 10, **metrics)])
    assert spent["dp_epsilon_max"] is None and spent["dp_unbounded"] is True
    dp = OmegaConf.create(
        {"level": "record", "delta": 1e-5, "clip_norm": 1.0, "noise_multiplier": 0.0,
         "target_epsilon": 0.0, "max_epsilon": 0.0}
    )  # fmt: skip
    report = record_report([{"round": 1, **spent}], dp)
    assert report["epsilon"] is None and report["bounded"] is False
    json.dumps(report, allow_nan=False)  # no Infinity


def test_the_server_keeps_every_holders_epsilon_by_holder_id_and_the_summary_the_largest():
    from fakes import fit_result
    from omegaconf import OmegaConf

    from fl_app.fl.results import holder_privacy
    from fl_app.privacy.report import record_report

    results = [
        fit_result("1", [np.zeros(1)], 10, dp_epsilon=1.5, dp_steps=8, dp_noise_multiplier=1.1,
                   dp_holder="a"),
        fit_result("2", [np.zeros(1)], 10, dp_epsilon=2.5, dp_steps=8, dp_noise_multiplier=0.9,
                   dp_holder="b"),
    ]  # fmt: skip
    stripped, spent = holder_privacy(results)
    assert all(not any(k.startswith("dp_") for k in res.metrics) for _, res in stripped)
    assert spent["dp_epsilon_max"] == 2.5
    # round 2: holder a again, under another Flower node id (a restart)
    rows = [{"round": 1, **spent}, {"round": 2, "dp_holder_epsilon": {"a": 3.0}}]
    dp = OmegaConf.create(
        {"level": "record", "delta": 1e-5, "clip_norm": 1.0, "noise_multiplier": 1.0,
         "target_epsilon": 0.0, "max_epsilon": 0.0}
    )  # fmt: skip
    report = record_report(rows, dp)
    assert report["per_holder_epsilon"] == {"a": 3.0, "b": 2.5}
    assert report["epsilon"] == 3.0 and report["per_holder_noise_multiplier"]["b"] == 0.9
    assert report["unit"].startswith("adding or removing one record of one holder's training")
    assert "n is treated as public" in report["unit"]


def test_a_sample_larger_than_the_padded_batch_is_summed_in_parts(trainer, monkeypatch):
    from fl_app.ml import dpsgd

    trainer.configure(ClipAndNoise(0.5, 0.0))
    x, y = batch(size=8, scale=5.0)
    whole = clipped(trainer, x, y, np.ones(8))
    halves = [clipped(trainer, x[i : i + 4], y[i : i + 4], np.ones(4)) for i in (0, 4)]
    for w, a, b in zip(whole, *halves, strict=True):
        np.testing.assert_allclose(w, a + b, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(dpsgd, "capacity_for", lambda batch_size: 3)  # force several parts
    before = [v.numpy().copy() for v in trainer.net.trainable_variables]
    assert trainer.train(*batch(size=40), ClipAndNoise(1.0, 0.5), epochs=1, batch_size=16) == 2
    assert any(
        not np.allclose(a, v.numpy())
        for a, v in zip(before, trainer.net.trainable_variables, strict=True)
    )
