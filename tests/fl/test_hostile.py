"""Issue 12, HE findings: results that lie. Each test reproduces a finding of the hostile
probe (it failed before the fix) with real TenSEAL ciphertexts."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest
from clients import he_client
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from he_rounds import SHAPES, client_result, decrypt, make_round

from fl_app.config import ConfigError, compose_config
from fl_app.crypto.header import Header
from fl_app.crypto.keys import (
    MANIFEST_NAME,
    build_context,
    context_from,
    generate_keys,
    public_bytes,
    secret_bytes,
)
from fl_app.crypto.packing import Layout
from fl_app.crypto.payload import (
    EncryptedSum,
    PayloadError,
    decrypt_aggregate,
    encrypt_update,
)
from fl_app.fl.protocol import REFUSED_KEY
from fl_app.fl.server_keys import ServerKeys
from fl_app.run.artifacts import aggregated_rounds

ONES = [np.ones(s, np.float32) for s in SHAPES]


def test_a_round_in_which_every_update_is_rejected_is_not_a_completed_round(keys):
    strategy, proxies, _, _ = make_round(keys, [5, 5])
    stranger = build_context(keys[0])  # every update under another key
    results = []
    for proxy in proxies:
        payload = encrypt_update(stranger, keys[0], ONES, 0.5, "x/1")
        res = FitRes(Status(Code.OK, "ok"), ndarrays_to_parameters([np.frombuffer(b, np.uint8)
                     for b in payload]), 5, {})  # fmt: skip
        results.append((proxy, res))
    params, _ = strategy.aggregate_fit(1, results, [])
    assert params is None
    assert strategy.history.row(1)["aggregated"] is False
    assert aggregated_rounds(strategy.history) == []


def test_the_server_checks_its_public_context_against_the_preset_without_keys_json(tmp_path):
    generate_keys(tmp_path, "nvflare")
    (tmp_path / MANIFEST_NAME).unlink()  # nothing says which preset these keys are for
    cfg = compose_config(
        ["privacy=he", "he.preset=compact", f"he.public_context={tmp_path / 'public.ctx'}"]
    )
    with pytest.raises(ConfigError, match=r"he.preset='compact' is invalid .* is CKKS N=8192"):
        ServerKeys.load(cfg, tmp_path / "run")


@pytest.mark.parametrize("reported", [10**6, 100])
def test_a_count_unlike_the_announced_one_fails_that_client_not_the_round(keys, reported):
    strategy, proxies, config, _ = make_round(keys, [10, 10])
    honest = client_result(keys, proxies[0], ONES, 10, config)
    liar = client_result(keys, proxies[1], ONES, reported, config)
    params, _ = strategy.aggregate_fit(1, [honest, liar], [])
    # min_fit_clients=2 with one survivor: the round keeps the old model, nobody is skewed
    assert params is None
    row = strategy.history.row(1)
    assert (row["fit_clients"], row["fit_failures"]) == (1, 1)
    assert strategy.counts.get(proxies[1].cid) == 10  # the remembered count stays


def test_a_liar_among_three_is_dropped_and_the_mean_stays_exact(keys, caplog):
    strategy, proxies, config, _ = make_round(keys, [10, 10, 10])
    results = [client_result(keys, p, ONES, 10, config) for p in proxies[:2]]
    results.append(client_result(keys, proxies[2], ONES, 100, config))
    params, _ = strategy.aggregate_fit(1, results, [])
    for got in decrypt(keys, params):  # 1.0, not the 0.25 a false count produced
        np.testing.assert_allclose(got, 1.0, atol=1e-5)
    assert "num_examples=100 differs from the 10 it announced" in caplog.text


def test_one_result_per_client_per_round(keys, caplog):
    strategy, proxies, config, _ = make_round(keys, [5, 5, 5], min_fit_clients=1)
    twice = client_result(keys, proxies[0], ONES, 5, config)
    other = client_result(keys, proxies[1], [3 * w for w in ONES], 5, config)
    params, _ = strategy.aggregate_fit(1, [twice, twice, other], [])
    row = strategy.history.row(1)
    assert (row["fit_clients"], row["fit_failures"]) == (2, 1)
    for got in decrypt(keys, params):  # (1 + 3) / 2: client c0 weighs once
        np.testing.assert_allclose(got, 2.0, atol=1e-5)
    assert "client c0 rejected: a second result this round" in caplog.text


def test_a_payload_replayed_from_another_round_or_run_is_dropped(keys, caplog):
    from flwr.server.client_manager import SimpleClientManager

    strategy, proxies, config, _ = make_round(keys, [5, 5], min_fit_clients=1)
    round_one = [client_result(keys, p, ONES, 5, config) for p in proxies]
    assert strategy.aggregate_fit(1, round_one, [])[0] is not None
    manager = SimpleClientManager()
    for proxy in proxies:
        manager.register(proxy)
    config_two = strategy.configure_fit(2, strategy.latest_parameters, manager)[0][1].config
    fresh = client_result(keys, proxies[0], ONES, 5, config_two)
    strategy.aggregate_fit(2, [fresh, round_one[1]], [])  # c1 replays round 1
    assert strategy.history.row(2)["fit_failures"] == 1
    assert "client c1 rejected: made for" in caplog.text and "a replayed" in caplog.text
    other_run, *_ = make_round(keys, [5, 5], min_fit_clients=1)  # another run's tag
    assert other_run.aggregate_fit(1, [round_one[0]], [])[0] is None


def _aggregate(keys, weight: float = 1.0) -> list[bytes]:
    preset, secret, public = keys
    total = EncryptedSum(public, preset, Layout.of(ONES))
    payload = encrypt_update(secret, preset, ONES, weight)
    total.add(total.check(payload), weight)
    return total.result()


def _with_header(payload: list[bytes], **changes) -> list[bytes]:
    header = dataclasses.replace(Header.from_bytes(payload[0]), **changes)
    return [header.to_bytes(), *payload[1:]]


@pytest.mark.parametrize("total", [math.nan, math.inf, -math.inf, 1e-300, 0.0, -1.0])
def test_the_client_refuses_an_aggregate_whose_total_weight_cannot_be_real(keys, total):
    forged = _with_header(_aggregate(keys), total_weight=total)
    with pytest.raises(PayloadError, match=r"total weight .* is invalid"):
        decrypt_aggregate(keys[1], keys[0], forged)


def test_the_client_refuses_an_aggregate_with_a_ciphertext_too_many_or_too_few(keys):
    good = _aggregate(keys)
    for payload in ([*good, good[-1]], good[:-1]):
        with pytest.raises(PayloadError, match="ciphertexts, the header announces"):
            decrypt_aggregate(keys[1], keys[0], payload)


def test_a_forged_header_on_another_keys_ciphertexts_is_refused_after_decryption(keys):
    preset, secret, _ = keys
    stranger = build_context(preset)
    stranger_public = context_from(public_bytes(stranger))
    total = EncryptedSum(stranger_public, preset, Layout.of(ONES))
    total.add(total.check(encrypt_update(stranger, preset, ONES, 1.0)), 1.0)
    # the header claims our key: the server cannot tell, the client decrypts garbage
    ours = Header.from_bytes(_aggregate(keys)[0]).fingerprint
    forged = _with_header(total.result(), fingerprint=ours)
    with pytest.raises(PayloadError, match=r"beyond the 64 a genuine one|its ciphertexts carry"):
        decrypt_aggregate(secret, preset, forged)
    np.testing.assert_allclose(decrypt_aggregate(secret, preset, _aggregate(keys))[0], 1.0)


def test_an_honest_client_refuses_a_garbage_aggregate_before_evaluating_it(keys, tmp_path):
    from fl_app.crypto.keys import SECRET_NAME
    from fl_app.crypto.secret_files import write_private
    from fl_app.fl.protocol import ENCRYPTED_KEY
    from fl_app.ml.data import ClientData, Split

    preset, secret, _ = keys
    write_private(tmp_path / SECRET_NAME, secret_bytes(secret))
    split = Split(np.zeros((4, 3), np.float32), np.zeros(4, np.int64))
    client = he_client(
        lambda: pytest.fail("the model must not be built for a refused aggregate"),
        ClientData(split, split), preset=preset, secret_context=str(tmp_path / SECRET_NAME),
        local_epochs=1, batch_size=2, seed=0,
    )  # fmt: skip
    forged = _with_header(_aggregate(keys), total_weight=1e-300)
    arrays = [np.frombuffer(b, np.uint8) for b in forged]
    _, examples, metrics = client.evaluate(arrays, {ENCRYPTED_KEY: True})
    assert examples == 0 and "aggregate total weight 1e-300 is invalid" in metrics[REFUSED_KEY]
    weights, examples, metrics = client.fit(arrays, {ENCRYPTED_KEY: True})  # it says so
    assert (weights, examples) == ([], 0) and metrics[REFUSED_KEY].startswith(
        "the aggregate is refused: "
    )


# ---------------------------------------------------------------- issue 22


def _with_header_bytes(result, header: bytes):
    proxy, res = result
    arrays = [np.frombuffer(header, np.uint8), *parameters_to_ndarrays(res.parameters)[1:]]
    return proxy, dataclasses.replace(res, parameters=ndarrays_to_parameters(arrays))


@pytest.mark.parametrize(
    "header",
    [
        b"[" * 50000,  # RecursionError in json
        b'{"version": 1, "preset": "seeded", "scheme": "bfv", "fingerprint": "f", '
        b'"layout": {"shapes": [[2]], "dtypes": ["float32"]}, "count": 1e400}',  # Overflow
        b'{"version": 1, "preset": "seeded", "scheme": "bfv", "fingerprint": "f", '
        b'"layout": {"shapes": [[1e400]], "dtypes": ["float32"]}, "count": 1}',
        b'{"version": 1, "preset": "seeded", "scheme": "bfv", "fingerprint": "f", '
        b'"layout": [], "count": 1}',  # AttributeError-shaped
    ],
    ids=["nested", "count-1e400", "shape-1e400", "layout-list"],
)
def test_a_header_that_crashed_the_server_drops_that_client_not_the_round(keys, header, caplog):
    strategy, proxies, config, _ = make_round(keys, [10, 10, 10])
    honest = [client_result(keys, p, ONES, 10, config) for p in proxies[:2]]
    hostile = _with_header_bytes(client_result(keys, proxies[2], ONES, 10, config), header)
    params, _ = strategy.aggregate_fit(1, [*honest, hostile], [])
    for got in decrypt(keys, params):  # the honest clients' mean, exactly
        np.testing.assert_allclose(got, 1.0, atol=1e-5)
    assert strategy.history.row(1)["fit_failures"] == 1
    assert "client c2 rejected: header is not valid" in caplog.text


def _evaluation(proxy, examples: int, accuracy: float):
    from flwr.common import EvaluateRes

    return proxy, EvaluateRes(Status(Code.OK, "ok"), 0.5, examples, {"accuracy": accuracy})


def test_an_evaluation_claiming_more_examples_than_announced_is_that_clients_failure(keys, caplog):
    strategy, proxies, _, _ = make_round(keys, [40, 40, 40])  # each announced 10 test rows
    results = [_evaluation(proxies[0], 10, 0.5), _evaluation(proxies[1], 10, 0.7)]
    results.append(_evaluation(proxies[2], 10**9, 1.0))
    _, metrics = strategy.aggregate_evaluate(1, results, [])
    assert metrics["accuracy"] == pytest.approx(0.6)  # not 0.99999996
    row = strategy.history.row(1)
    assert (row["eval_clients"], row["eval_failures"]) == (2, 1)
    assert "client c2 rejected: its evaluation claims 1000000000 examples, more than the 10" in (
        caplog.text
    )


def test_an_evaluation_with_fit_claiming_too_many_examples_is_left_out(keys, caplog):
    strategy, proxies, config, _ = make_round(keys, [40, 40])
    results = []
    for proxy, (examples, accuracy) in zip(proxies, [(10, 0.5), (10**9, 1.0)], strict=True):
        proxy_, res = client_result(keys, proxy, ONES, 40, config)
        metrics = {"prior_loss": 0.1, "prior_accuracy": accuracy, "prior_examples": examples}
        results.append((proxy_, dataclasses.replace(res, metrics=metrics)))
    strategy.aggregate_fit(2, results, [])
    assert strategy.history.row(1)["eval_accuracy"] == pytest.approx(0.5)
    assert "claims 1000000000 examples" in caplog.text


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (
            {"num-examples": 2 * 10**6, "num-eval-examples": 5},
            r"it reported 2000000 examples, "
            r"allowed 1\.\.1000000 \(he\.max_examples\)",
        ),
        ("its reply is an error (code 1): boom", r"its reply is an error \(code 1\): boom"),
        ({"num-examples": "ten", "num-eval-examples": 5}, "it answered num-examples='ten'"),
        ({"num-examples": 10}, "it answered num-eval-examples=None"),
    ],
    ids=["too-many", "error-reply", "not-an-int", "no-eval-count"],
)
def test_a_client_left_out_of_a_round_is_told_apart_by_its_real_reason(keys, answer, reason,
                                                                       caplog):  # fmt: skip
    from fakes import FakeProxy
    from strategies import configured_fit, federated

    from fl_app.fl.example_counts import ExampleCounts

    initial = [np.zeros(s, np.float32) for s in [(4, 3), (3,), (50,)]]
    proxies = [FakeProxy("ok"), FakeProxy("odd")]
    answers = {"ok": {"num-examples": 10, "num-eval-examples": 3}, "odd": answer}
    strategy = federated(
        "he", initial=initial, keys=keys, min_fit_clients=1,
        counts=ExampleCounts(lambda rnd, asked, config: dict(answers), max_examples=10**6),
    )  # fmt: skip
    kept = configured_fit(strategy, proxies)
    assert [proxy.cid for proxy, _ in kept] == ["ok"]
    assert re.search(rf"client odd left out: {reason}", caplog.text), caplog.text


def _refusal(proxy, stage: str = "evaluate"):
    from flwr.common import EvaluateRes

    metrics = {REFUSED_KEY: "the aggregate is refused: aggregate decrypts to |w| = 256"}
    if stage == "evaluate":
        return proxy, EvaluateRes(Status(Code.OK, "ok"), 0.0, 0, metrics)
    return proxy, FitRes(Status(Code.OK, "ok"), ndarrays_to_parameters([]), 0, metrics)


def test_an_aggregate_most_clients_refuse_is_not_the_global_model(keys, caplog):
    """Issue 22, item 3: the run ended completed with the garbage aggregate as its model."""
    strategy, proxies, config, saved = make_round(keys, [10, 10, 10])
    initial = strategy.latest_parameters
    results = [client_result(keys, p, ONES, 10, config) for p in proxies]
    aggregate, _ = strategy.aggregate_fit(1, results, [])
    assert strategy.encrypted and aggregate is not None
    strategy.aggregate_evaluate(1, [_refusal(p) for p in proxies], [])
    row = strategy.history.row(1)
    assert row["aggregated"] is False and "|w| = 256" in row["aggregate_refused"]
    assert strategy.latest_parameters is initial and strategy.encrypted is False
    assert saved[-1] is False  # the checkpoint holds the previous (public) model again
    assert aggregated_rounds(strategy.history) == []
    assert "round 1: its aggregate was refused by 3 of 3 clients" in caplog.text
    from flwr.server.client_manager import SimpleClientManager

    manager = SimpleClientManager()
    for proxy in proxies:
        manager.register(proxy)
    sent = strategy.configure_fit(2, aggregate, manager)  # Flower still holds the refused one
    assert all(ins.parameters is initial for _, ins in sent)
    assert all(ins.config["he-encrypted"] is False for _, ins in sent)


def test_one_client_refusing_alone_is_that_clients_failure(keys):
    strategy, proxies, config, _ = make_round(keys, [10, 10, 10])
    results = [client_result(keys, p, ONES, 10, config) for p in proxies]
    aggregate, _ = strategy.aggregate_fit(1, results, [])
    evaluations = [_evaluation(p, 2, 0.5) for p in proxies[:2]] + [_refusal(proxies[2])]
    strategy.aggregate_evaluate(1, evaluations, [])
    row = strategy.history.row(1)
    assert row["aggregated"] is True and "aggregate_refused" not in row
    assert (row["eval_clients"], row["eval_failures"]) == (2, 1)
    assert strategy.latest_parameters is aggregate


def test_a_refusal_in_the_next_fit_restores_the_previous_global_model(keys):
    strategy, proxies, config, _ = make_round(keys, [10, 10, 10])
    initial = strategy.latest_parameters
    strategy.aggregate_fit(1, [client_result(keys, p, ONES, 10, config) for p in proxies], [])
    params, _ = strategy.aggregate_fit(2, [_refusal(p, "fit") for p in proxies], [])
    assert params is None and strategy.latest_parameters is initial  # the global model again
    assert strategy.history.row(1)["aggregated"] is False
    assert strategy.history.row(2)["aggregated"] is False
    assert strategy.history.row(2)["fit_failures"] == 3


@pytest.mark.parametrize("factor", [1.9, 0.5, 1.01])
def test_a_total_weight_its_ciphertexts_do_not_carry_is_refused(keys, factor):
    """Issue 22, item 5: multiplying total_weight by 1.9 (still within range) gave a model
    of 1/1.9 the true weights. The weight is now part of what is encrypted."""
    genuine = _aggregate(keys, weight=0.9)
    np.testing.assert_allclose(decrypt_aggregate(keys[1], keys[0], genuine)[0], 1.0, atol=1e-5)
    altered = _with_header(genuine, total_weight=0.9 * factor)
    with pytest.raises(PayloadError, match=r"claims total weight .* its ciphertexts carry 0\.9"):
        decrypt_aggregate(keys[1], keys[0], altered)


@pytest.mark.parametrize("preset_name", ["compact", "nvflare"])
def test_every_preset_carries_its_total_weight(preset_name):
    from fl_app.crypto.presets import get_preset

    preset = get_preset(preset_name)
    secret = build_context(preset)
    public = context_from(public_bytes(secret))
    total = EncryptedSum(public, preset, Layout.of(ONES))
    for weight in (0.25, 0.5):
        total.add(total.check(encrypt_update(secret, preset, ONES, weight)), weight)
    for got in decrypt_aggregate(secret, preset, total.result()):
        np.testing.assert_allclose(got, 1.0, atol=1e-4)
    with pytest.raises(PayloadError, match="claims total weight"):
        decrypt_aggregate(secret, preset, _with_header(total.result(), total_weight=1.4))
