"""The hostile-client harness (issue 22): a real simulation per privacy mode in which the
node of partition 0 sends one malformation per round (`fault.hostile`, fl_app/fl/hostile.py)
while two honest nodes train. The run must complete over the honest clients, the hostile
result must never be aggregated nor move a metric, and the round line and summary.json
must name the dropped client and why. A new case joins HOSTILE_CASES and CASES here."""

from __future__ import annotations

import json

import pytest
from runs import flwr_run

pytestmark = pytest.mark.slow

# case -> the reason the server gives, by mode ("*": every mode). None: that mode cannot
# screen the case (see README, threat model) and the test only checks the run completes.
CASES = {
    "nested_header": {
        "he": "header is not valid: RecursionError",
        "fedavg": "shapes",
        "secagg": "masked vector of shapes",
    },
    "overflow_header": {
        "he": "header is not valid: OverflowError",
        "fedavg": "shapes",
        "secagg": "masked vector of shapes",
    },
    "garbage": {
        "he": "header is not valid",
        "fedavg": "shapes",
        "secagg": "masked vector of shapes",
    },
    "missing_arrays": {
        "he": "ciphertexts, expected",
        "fedavg": "shapes",
        "secagg": "masked vector of shapes",
    },
    "extra_arrays": {
        "he": "ciphertexts, expected",
        "fedavg": "shapes",
        "secagg": "masked vector of shapes",
    },
    "nan": {"he": "header is not valid", "fedavg": "NaN or infinity"},
    "count": {"he": "differs from the", "fedavg": "differs from the"},
    "eval_count": {"he": "its evaluation claims 1000000000", "fedavg": "its evaluation claims"},
    "replay": {"he": "a replayed or misdirected update", "fedavg": None},
    "dp_report": {"he": None, "fedavg": None},  # dropped from the DP report, not the round
    "public_key_upload": {"he": "a full ciphertext, not a seeded one", "fedavg": None},
    # accepted by the server (it cannot tell); every client then refuses the aggregate
    "other_key": {"he": "refused the aggregate it received", "fedavg": None},
}


OWN_CASES = {"secagg": ["garbage", "extra_arrays"]}


# Plaintext FedAvg's own checks (shapes, NaN, counts, evaluation counts) are driven in
# process by tests/fl/test_screening.py and tests/fl/test_strategy.py; end to end, the
# two modes whose server path differs most: HE, and SecAgg+ (Flower's workflow).
@pytest.mark.parametrize("mode", ["he", "secagg"])
def test_one_hostile_client_neither_crashes_nor_moves_the_run(superlink, tmp_path, mode):
    out = tmp_path / mode
    # Every case under HE. The others share HE's screening path for most cases (the
    # contract test drives them all in process), so end to end they run the cases their
    # own code decides, which keeps CI short: plaintext's shape, NaN and count checks,
    # SecAgg+'s masked-vector screen.
    cases = list(CASES) if mode == "he" else OWN_CASES[mode]
    run_config = (
        f"privacy='{mode}' num-server-rounds={len(cases)} output-dir='{out}' "
        f"overrides='federation.num_supernodes=3 task=breast_cancer "
        # one malformation per round and message: evaluate messages in every round, so
        # eval_count's lie is its own round's (with_fit's bound: tests/fl/test_hostile.py)
        f"strategy.evaluate_with_fit=false fault.hostile=[{','.join(cases)}]'"
    )
    _, status, output = flwr_run(superlink, run_config)
    assert status == "finished:completed", output[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    rows = {row["round"]: row for row in json.loads((out / "metrics.json").read_text())}
    table = []
    for rnd, case in enumerate(cases, start=1):
        row, reason = rows[rnd], CASES[case].get(mode)  # secagg: the server cannot tell
        dropped = [*row.get("fit_dropped", []), *row.get("evaluate_dropped", [])]
        table.append((case, row.get("fit_clients"), row.get("eval_clients"), dropped))
        assert row["fit_clients"] >= 2  # both honest clients, every round
        if case == "other_key" and mode == "he":  # its aggregate is not the global model
            assert row["aggregated"] is False and row["aggregate_refused"], row
            assert rnd in summary["rounds_refused"] and "aggregate refused by the clients" in (
                output
            )
            continue
        if reason is not None:
            assert any(reason in why for why in dropped), (case, dropped)
            assert row["aggregated"] is True
            assert any(d["round"] == rnd and reason in d["why"] for d in summary["dropped"])
        if case == "eval_count" and reason is not None:
            assert row.get("eval_accuracy", 0) < 1.0  # not the liar's claimed 1.0
    print(f"\nhostile harness, {mode}:")
    for case, fit, evaluated, dropped in table:
        print(f"| {case} | {fit} | {evaluated} | {dropped[0] if dropped else '-'} |")
    assert summary["rounds_completed"] == len(cases) - (mode == "he")  # other_key's refused
