"""Differential privacy: clipping, noise, accounting, and how the apps use them."""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest
from clients import keras_client
from dp_accounting.pld import pld_privacy_accountant
from fakes import FakeProxy
from flwr.common import ndarrays_to_parameters
from flwr.server.client_manager import SimpleClientManager
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import norm
from strategies import plain_fedavg

from fl_app.config import ConfigError, compose_config, mode_of
from fl_app.fl.client import KerasClient
from fl_app.fl.protocol import SAMPLED_KEY
from fl_app.ml.data import ClientData, Split
from fl_app.ml.dpsgd import ClipAndNoise
from fl_app.ml.models import build_model, weights_of
from fl_app.ml.objective import CLASSIFICATION
from fl_app.privacy.dp import RoundRelease, clip, epsilon, global_norm, privatize
from fl_app.privacy.report import privacy_report
from fl_app.run.history import RunHistory

finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)
layers = st.lists(arrays(np.float32, st.integers(1, 30), elements=finite), min_size=1, max_size=4)


@settings(max_examples=200, deadline=None)
@given(update=layers, clip_norm=st.floats(1e-3, 1e3))
def test_clipping_bounds_the_norm_and_keeps_small_updates(update, clip_norm):
    clipped = clip(update, clip_norm)
    assert global_norm(clipped) <= clip_norm * (1 + 1e-9)
    if global_norm(update) <= clip_norm:
        for a, b in zip(update, clipped, strict=True):
            np.testing.assert_array_equal(a.astype(np.float64), b)
    else:  # scaled, not truncated: the direction is kept
        assert global_norm(clipped) == pytest.approx(clip_norm)


@settings(max_examples=50, deadline=None)
@given(start=layers, scale=st.floats(0, 100), clip_norm=st.floats(0.01, 10))
def test_without_noise_the_sent_update_is_the_clipped_one(start, scale, clip_norm):
    rng = np.random.default_rng(1)
    trained = [s + scale * rng.standard_normal(s.shape).astype(np.float32) for s in start]
    out = privatize(start, trained, ClipAndNoise(clip_norm, 0.0), clients=5)
    assert [o.dtype for o in out] == [t.dtype for t in trained]
    sent = [o.astype(np.float64) - s for o, s in zip(out, start, strict=True)]
    assert global_norm(sent) <= clip_norm * (1 + 1e-5) + 1e-4  # float32 rounding


def test_each_client_adds_its_share_of_the_noise():
    start = [np.zeros(200_000, np.float32)]
    settings_ = ClipAndNoise(clip_norm=2.0, noise_multiplier=1.5)
    out = privatize(start, start, settings_, clients=9, rng=np.random.default_rng(0))
    assert np.std(out[0]) == pytest.approx(1.5 * 2.0 / 3, rel=0.01)
    # noise comes from the OS, not from a seed anyone could know
    again = privatize(start, start, settings_, clients=9)
    assert not np.array_equal(again[0], privatize(start, start, settings_, clients=9)[0])


def test_bad_settings_are_refused_with_the_value():
    with pytest.raises(ValueError, match="clip_norm=0"):
        ClipAndNoise(0, 1)
    with pytest.raises(ValueError, match="noise_multiplier=-1"):
        ClipAndNoise(1, -1)
    with pytest.raises(ValueError, match="clients=0"):
        privatize([np.zeros(2)], [np.zeros(2)], ClipAndNoise(1, 1), clients=0)
    with pytest.raises(ConfigError, match=r"dp\.noise_multiplier"):
        compose_config(["dp.noise_multiplier=-0.5"])
    with pytest.raises(ConfigError, match=r"dp\.delta"):
        compose_config(["dp.delta=0"])


@pytest.mark.parametrize(("q", "sigma", "rounds"), [(1.0, 1.0, 3), (0.3, 1.1, 20)])
def test_epsilon_matches_the_accountant(q, sigma, rounds):
    event = dp_accounting.GaussianDpEvent(sigma)
    if q < 1:
        event = dp_accounting.PoissonSampledDpEvent(q, event)
    accountant = pld_privacy_accountant.PLDAccountant()
    accountant.compose(dp_accounting.SelfComposedDpEvent(event, rounds))
    expected = accountant.get_epsilon(1e-5)
    ours = epsilon([RoundRelease(q, sigma)] * rounds, 1e-5)
    assert ours == pytest.approx(expected, rel=1e-6)


def test_full_participation_epsilon_is_the_analytic_gaussian_one():
    # T rounds of the Gaussian mechanism with multiplier s compose to one with s/sqrt(T);
    # Balle & Wang (2018) give delta(eps) for it in closed form.
    sigma, rounds, delta = 2.0, 4, 1e-5
    eps = epsilon([RoundRelease(1.0, sigma)] * rounds, delta)
    s = sigma / math.sqrt(rounds)
    half = 1 / (2 * s)
    exact_delta = norm.cdf(-eps * s + half) - math.exp(eps) * norm.cdf(-eps * s - half)
    assert exact_delta == pytest.approx(delta, rel=0.05)
    assert epsilon([RoundRelease(1.0, sigma)] * (rounds + 1), delta) > eps
    assert epsilon([RoundRelease(1.0, 2 * sigma)] * rounds, delta) < eps


def test_a_round_with_drop_outs_carries_less_noise():
    full = RoundRelease.of(sampled=10, available=20, aggregated=10, noise_multiplier=1.0)
    partial = RoundRelease.of(sampled=10, available=20, aggregated=4, noise_multiplier=1.0)
    assert (full.sampling_rate, full.noise_multiplier) == (0.5, 1.0)
    assert partial.noise_multiplier == pytest.approx(math.sqrt(0.4))
    assert epsilon([partial], 1e-5) > epsilon([full], 1e-5)
    assert epsilon([RoundRelease(1.0, 0.0)], 1e-5) == math.inf
    with pytest.raises(ValueError, match="aggregated"):
        RoundRelease.of(sampled=3, available=3, aggregated=4, noise_multiplier=1.0)


def test_summary_reports_epsilon_of_the_released_rounds():
    cfg = compose_config(["dp.enabled=true", "dp.noise_multiplier=1.2"])
    history = RunHistory()
    for rnd, aggregated in ((1, 10), (2, 10), (3, 1)):  # round 3 skipped: 1 < min_fit 2
        history.record(rnd, fit_sampled=10, fit_available=10, fit_clients=aggregated)
    report = privacy_report(
        history.rows(),
        cfg.dp,
        min_fit_clients=cfg.strategy.min_fit_clients,
        server_sees_individual_updates=mode_of(cfg).server_sees_individual_updates,
    )
    assert report["released_rounds"] == 2
    assert report["epsilon"] == epsilon([RoundRelease(1.0, 1.2)] * 2, 1e-5)
    assert report["delta"] == 1e-5 and report["server_sees_individual_updates"] is False


def test_the_strategy_tells_clients_how_many_were_sampled():
    manager = SimpleClientManager()
    for cid in range(4):
        manager.register(FakeProxy(str(cid)))
    history = RunHistory()
    strategy = plain_fedavg(history=history, fraction_fit=0.5, min_fit_clients=2,
                           min_available_clients=2)  # fmt: skip
    instructions = strategy.configure_fit(1, ndarrays_to_parameters([np.zeros(2)]), manager)
    assert [ins.config[SAMPLED_KEY] for _, ins in instructions] == [2, 2]
    assert (history.row(1)["fit_sampled"], history.row(1)["fit_available"]) == (2, 4)


def tabular_mlp():
    """The built-in MLP for 30 features and 2 classes."""
    return build_model(
        "mlp",
        model_args={"input_shape": (30,), "outputs": 2},
        objective=CLASSIFICATION,
        optimizer="adam",
        learning_rate=0.05,
        seed=0,
    )


def tiny_client(dp: ClipAndNoise | None) -> KerasClient:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 30)).astype(np.float32), rng.integers(0, 2, 40)
    data = ClientData(train=Split(x, y), test=Split(x[:10], y[:10]))
    factory = tabular_mlp
    return keras_client(factory, data, local_epochs=2, batch_size=8, seed=0, dp=dp)


def test_a_dp_client_sends_a_clipped_update_with_weight_one_and_no_training_metrics():
    start = weights_of(tabular_mlp())
    plain_weights, plain_n, plain_metrics = tiny_client(None).fit(start, {SAMPLED_KEY: 3})
    assert plain_n == 40 and "train_loss" in plain_metrics
    plain_update = [w - s for w, s in zip(plain_weights, start, strict=True)]
    assert global_norm(plain_update) > 0.1  # so it would be clipped

    client = tiny_client(ClipAndNoise(clip_norm=0.1, noise_multiplier=0.0))
    weights, n, metrics = client.fit(start, {SAMPLED_KEY: 3})
    assert n == 1 and client.get_properties({})["num-examples"] == 1
    assert set(metrics) == {"train_seconds"}
    sent = [w.astype(np.float64) - s for w, s in zip(weights, start, strict=True)]
    assert global_norm(sent) <= 0.1 + 1e-5


def test_a_dp_client_reports_no_test_split_size_either():
    start = weights_of(tabular_mlp())
    assert tiny_client(None).evaluate(start, {})[1] == 10
    client = tiny_client(ClipAndNoise(clip_norm=0.1, noise_multiplier=1.0))
    assert client.evaluate(start, {})[1] == 1
    _, _, metrics = client.fit(start, {SAMPLED_KEY: 3, "evaluate-first": True})
    assert metrics["prior_examples"] == 1
