"""Fault injection picks exact shares of clients, and what it sends is rejected."""

from __future__ import annotations

import numpy as np
import pytest

from fl_app.config import ConfigError, compose_config
from fl_app.crypto.keys import build_context, context_from, public_bytes
from fl_app.crypto.packing import Layout
from fl_app.crypto.payload import EncryptedSum, PayloadError, encrypt_update, to_arrays, to_payload
from fl_app.crypto.presets import get_preset
from fl_app.fl.faults import FaultPlan, corrupt


def plans(fail: float, corrupt_share: float, n: int = 10) -> list[FaultPlan]:
    return [FaultPlan(fail=fail, corrupt=corrupt_share, seed=0, slot=i, slots=n) for i in range(n)]


@pytest.mark.parametrize("rnd", [1, 2, 3, 7])
def test_exact_shares_fail_and_corrupt_every_round(rnd):
    faults = [plan.fault(rnd) for plan in plans(0.3, 0.2)]
    assert faults.count("fail") == 3
    assert faults.count("corrupt") == 2
    assert faults.count(None) == 5


def test_different_clients_are_hit_in_different_rounds():
    hit = [{i for i, p in enumerate(plans(0.3, 0.0)) if p.fault(r)} for r in (1, 2)]
    assert hit[0] != hit[1]


def test_no_faults_by_default():
    cfg = compose_config()
    assert (cfg.fault.fail_fraction, cfg.fault.corrupt_fraction) == (0.0, 0.0)
    assert all(plan.fault(1) is None for plan in plans(0.0, 0.0))


def test_fault_fractions_are_validated():
    with pytest.raises(ConfigError, match=r"fault\.fail_fraction=1\.5"):
        compose_config(["fault.fail_fraction=1.5"])
    with pytest.raises(ConfigError, match=r"fault\.corrupt_fraction=0\.8"):
        compose_config(["fault.fail_fraction=0.5", "fault.corrupt_fraction=0.8"])


@pytest.mark.parametrize("name", ["seeded", "compact"])
def test_a_corrupted_he_payload_is_rejected_by_the_server_check(name):
    preset = get_preset(name)
    secret = build_context(preset)
    weights = [np.ones(5000, np.float32)]
    payload = to_arrays(encrypt_update(secret, preset, weights, 1.0))
    checker = EncryptedSum(context_from(public_bytes(secret)), preset, Layout.of(weights))
    with pytest.raises(PayloadError):
        checker.check(to_payload(corrupt(payload)))


def test_a_corrupted_plaintext_update_is_not_finite_and_has_the_wrong_shape():
    (first, second) = corrupt([np.ones((4, 3), np.float32), np.ones(3, np.float32)])
    assert first.shape != (4, 3)
    assert np.isnan(first).all()
    np.testing.assert_array_equal(second, np.ones(3))


def test_the_hostile_cases_the_config_allows_are_the_ones_the_harness_sends():
    from fl_app.config.validate import HOSTILE_CASES
    from fl_app.fl.hostile import HOSTILE_CASES as SENT

    assert sorted(HOSTILE_CASES) == sorted(SENT)


def test_the_round_line_names_each_dropped_client_and_why():
    from fl_app.run.history import RunHistory
    from fl_app.run.progress import RunFacts, round_line

    history = RunHistory()
    history.record(1, fit_clients=2, fit_sampled=3, aggregated=True,
                   fit_dropped=["PayloadError: client 7 rejected: header is not valid: "
                                "RecursionError"])  # fmt: skip
    line = round_line(history, 1, RunFacts(3, "accuracy", 10))
    assert "dropped client 7 rejected: header is not valid: RecursionError" in line
