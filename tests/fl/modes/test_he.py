"""The HE mode's aggregator with real ciphertexts: parity with FedAvg, failures, bad payloads."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import FakeProxy
from flwr.common import (
    Code,
    FitRes,
    Parameters,
    Status,
    ndarrays_to_parameters,
)
from he_rounds import SHAPES, client_result, decrypt, make_round
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import federated

from fl_app.crypto.backends import tolerance
from fl_app.crypto.keys import build_context
from fl_app.crypto.payload import encrypt_update, to_arrays
from fl_app.fl.example_counts import ExampleCounts
from fl_app.fl.protocol import (
    ENCRYPTED_KEY,
    REFERENCE_KEY,
    RUN_TAG_KEY,
)


def test_hundred_clients_with_up_to_a_million_examples_match_fedavg(keys):
    rng = np.random.default_rng(11)
    counts = rng.integers(1, 10**6, 100, endpoint=True).tolist()
    counts[:2] = [1, 10**6]
    strategy, proxies, config, saved = make_round(keys, counts)
    assert config[ENCRYPTED_KEY] is False  # round 1 starts from the public initial model
    assert config[REFERENCE_KEY] == sum(counts)
    updates = [[rng.uniform(-1, 1, s).astype(np.float32) for s in SHAPES] for _ in counts]
    results = [
        client_result(keys, p, u, n, config)
        for p, u, n in zip(proxies, updates, counts, strict=True)
    ]
    params, metrics = strategy.aggregate_fit(1, results, [])
    want = [
        sum(n * u[i].astype(np.float64) for u, n in zip(updates, counts, strict=True)) / sum(counts)
        for i in range(len(SHAPES))
    ]
    for got, expected in zip(decrypt(keys, params), want, strict=True):
        assert np.abs(got - expected).max() <= 1e-4
        np.testing.assert_allclose(got, expected, atol=tolerance(keys[0], 100) + 1e-6)
    assert metrics == {"train_loss": pytest.approx(1.0)}
    assert saved == [True]
    assert strategy.encrypted


def test_survivors_only_are_averaged_when_clients_fail(keys):
    counts = [10, 20, 30, 40]
    strategy, proxies, config, _ = make_round(keys, counts)
    updates = [[np.full(s, float(k + 1), np.float32) for s in SHAPES] for k in range(4)]
    results = [client_result(keys, proxies[k], updates[k], counts[k], config) for k in (0, 2, 3)]
    params, _ = strategy.aggregate_fit(1, results, [RuntimeError("node 2 crashed")])
    # survivors 1, 3, 4 with weights 10, 30, 40: (10*1 + 30*3 + 40*4) / 80 = 3.25
    for got in decrypt(keys, params):
        np.testing.assert_allclose(got, 3.25, atol=1e-5)
    assert strategy.history.row(1)["fit_failures"] == 1


def test_with_30_percent_failing_the_aggregate_is_the_survivors_weighted_mean(keys):
    rng = np.random.default_rng(30)
    counts = rng.integers(1, 500, 10, endpoint=True).tolist()
    strategy, proxies, config, _ = make_round(keys, counts)
    updates = [[rng.uniform(-2, 2, s).astype(np.float32) for s in SHAPES] for _ in counts]
    failed = set(rng.choice(10, size=3, replace=False).tolist())
    survivors = [k for k in range(10) if k not in failed]
    results = [client_result(keys, proxies[k], updates[k], counts[k], config) for k in survivors]
    failures = [RuntimeError(f"client {k} failed") for k in sorted(failed)]
    params, _ = strategy.aggregate_fit(1, results, failures)
    total = sum(counts[k] for k in survivors)
    for i, got in enumerate(decrypt(keys, params)):
        want = sum(counts[k] * updates[k][i].astype(np.float64) for k in survivors) / total
        np.testing.assert_allclose(got, want, atol=tolerance(keys[0], 10) + 1e-6)
    row = strategy.history.row(1)
    assert (row["fit_clients"], row["fit_failures"]) == (7, 3)


def test_bad_payloads_are_dropped_and_the_round_goes_on(keys, caplog):
    counts = [5, 5, 5]
    strategy, proxies, config, _ = make_round(keys, counts)
    ones = [np.ones(s, np.float32) for s in SHAPES]
    good = [client_result(keys, proxies[k], ones, 5, config) for k in (0, 1)]
    _, truncated = client_result(keys, proxies[2], ones, 5, config)
    truncated.parameters.tensors[1] = truncated.parameters.tensors[1][:100]
    stranger_ctx = build_context(keys[0])
    stranger = FitRes(
        status=Status(Code.OK, "ok"),
        parameters=ndarrays_to_parameters(
            to_arrays(encrypt_update(stranger_ctx, keys[0], ones, 1 / 3))
        ),
        num_examples=5,
        metrics={},
    )
    params, _ = strategy.aggregate_fit(
        1, [*good, (proxies[2], truncated), (FakeProxy("x"), stranger)], []
    )
    for got in decrypt(keys, params):
        np.testing.assert_allclose(got, 1.0, atol=1e-5)
    row = strategy.history.row(1)
    assert (row["fit_clients"], row["fit_failures"]) == (2, 2)
    assert "client c2 rejected" in caplog.text
    assert "client x rejected: encrypted under key" in caplog.text


def test_round_is_skipped_when_too_few_valid_payloads_remain(keys):
    strategy, proxies, config, saved = make_round(keys, [5, 5], min_fit_clients=2)
    ones = [np.ones(s, np.float32) for s in SHAPES]
    proxy, res = client_result(keys, proxies[0], ones, 5, config)
    bogus = FitRes(res.status, Parameters(tensors=[b"junk"], tensor_type="numpy.ndarray"), 5, {})
    params, _ = strategy.aggregate_fit(1, [(proxy, res), (proxies[1], bogus)], [])
    assert params is None
    assert saved == [False]  # the round is checkpointed with the unchanged plaintext model
    assert not strategy.encrypted


def test_out_of_range_example_counts_are_rejected(keys):
    strategy, proxies, config, _ = make_round(keys, [5, 5], min_fit_clients=1)
    ones = [np.ones(s, np.float32) for s in SHAPES]
    proxy, res = client_result(keys, proxies[0], ones, 5, config)
    liar = FitRes(res.status, res.parameters, 10**7, {})
    params, _ = strategy.aggregate_fit(1, [(proxy, res), (proxies[1], liar)], [])
    assert params is not None
    assert strategy.history.row(1)["fit_failures"] == 1


def test_server_refuses_a_private_context(keys):
    preset, secret, _ = keys
    with pytest.raises(ValueError, match="holds the HE secret key"):
        federated("he", initial=[np.zeros(3)], keys=(preset, secret, secret),
                  counts=ExampleCounts(lambda rnd, asked, _: {}, max_examples=10))  # fmt: skip


@pytest.fixture(scope="module")
def fixed_payloads(keys):
    """Three clients' results, made once: every fuzz example mutates the same bytes."""
    _, proxies, config, _ = make_round(keys, [5, 5, 5], min_fit_clients=1)
    ones = [np.ones(s, np.float32) for s in SHAPES]
    payloads = [
        list(client_result(keys, p, ones, 5, config)[1].parameters.tensors) for p in proxies
    ]
    return config[RUN_TAG_KEY], payloads  # the payloads are bound to that run tag


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_results_never_crash_the_server(keys, fixed_payloads, data):
    strategy, proxies, _, _ = make_round(keys, [5, 5, 5], min_fit_clients=1)
    strategy.aggregator.run_tag, payloads = fixed_payloads
    tensors = [[bytearray(t) for t in payload] for payload in payloads]
    victim = tensors[data.draw(st.integers(0, 2))]
    index = data.draw(st.integers(0, len(victim) - 1))
    for _ in range(data.draw(st.integers(1, 6))):
        if victim[index]:
            position = data.draw(st.integers(0, len(victim[index]) - 1))
            victim[index][position] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        victim[index] = victim[index][: data.draw(st.integers(0, len(victim[index])))]
    results = [
        (
            proxy,
            FitRes(
                status=Status(Code.OK, "ok"),
                parameters=Parameters([bytes(t) for t in payload], "numpy.ndarray"),
                num_examples=5,
                metrics={},
            ),
        )
        for proxy, payload in zip(proxies, tensors, strict=True)
    ]
    params, _ = strategy.aggregate_fit(1, results, [])  # must not raise
    assert params is not None  # at least the two untouched clients are aggregated
    row = strategy.history.row(1)
    assert row["fit_clients"] + row["fit_failures"] == 3
