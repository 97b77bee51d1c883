"""FederatedStrategy aggregates like FedAvg by hand, tolerates failures, records and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import FakeProxy, fit_result
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.client_manager import SimpleClientManager
from strategies import plain_fedavg

from fl_app.fl.evaluation import EvaluationPlan
from fl_app.fl.protocol import EVALUATE_FIRST_KEY
from fl_app.fl.results import payload_bytes, weighted_mean_metrics
from fl_app.fl.strategy import FederatedStrategy
from fl_app.run.history import RunHistory


def make_strategy(**kwargs) -> tuple[FederatedStrategy, list[tuple[int, int]]]:
    saved: list[tuple[int, int]] = []
    strategy = plain_fedavg(
        history=RunHistory(),
        on_round_end=lambda rnd, params, encrypted: saved.append((rnd, len(params.tensors))),
        **kwargs,
    )
    return strategy, saved


def test_weighted_mean_matches_hand_computation():
    strategy, _ = make_strategy(min_fit_clients=2)
    results = [
        fit_result("a", [np.array([1.0, 2.0]), np.array([[0.0]])], 10, train_loss=1.0),
        fit_result("b", [np.array([3.0, 6.0]), np.array([[4.0]])], 30, train_loss=3.0),
    ]
    params, metrics = strategy.aggregate_fit(1, results, [])
    first, second = parameters_to_ndarrays(params)
    # (10 * [1, 2] + 30 * [3, 6]) / 40 = [2.5, 5.0]; (10 * 0 + 30 * 4) / 40 = 3
    np.testing.assert_allclose(first, [2.5, 5.0])
    np.testing.assert_allclose(second, [[3.0]])
    assert metrics["train_loss"] == pytest.approx(2.5)


def test_failed_client_is_dropped_when_enough_remain():
    strategy, saved = make_strategy(min_fit_clients=2)
    results = [
        fit_result("a", [np.array([0.0])], 1),
        fit_result("b", [np.array([4.0])], 3),
    ]
    failed = FitRes(
        status=Status(code=Code.FIT_NOT_IMPLEMENTED, message="boom"),
        parameters=results[0][1].parameters,
        num_examples=100,
        metrics={},
    )
    failures = [(FakeProxy("c"), failed), RuntimeError("node lost")]
    params, _ = strategy.aggregate_fit(1, results, failures)
    np.testing.assert_allclose(parameters_to_ndarrays(params)[0], [3.0])
    row = strategy.history.row(1)
    assert row["fit_clients"] == 2
    assert row["fit_failures"] == 2
    assert saved == [(1, 1)]


def test_round_is_skipped_when_too_few_results_remain():
    strategy, saved = make_strategy(min_fit_clients=3)
    results = [fit_result("a", [np.array([1.0])], 5), fit_result("b", [np.array([2.0])], 5)]
    params, metrics = strategy.aggregate_fit(1, results, [RuntimeError("x")])
    assert params is None
    assert metrics == {}
    assert saved == []  # no global model yet, so nothing to checkpoint


def test_bytes_up_are_the_payload_sizes():
    strategy, _ = make_strategy(min_fit_clients=1)
    results = [fit_result("a", [np.zeros(100, np.float32)], 1)]
    strategy.aggregate_fit(1, results, [])
    assert strategy.history.row(1)["bytes_up"] == payload_bytes(results[0][1].parameters)
    assert payload_bytes(results[0][1].parameters) > 400  # 100 float32 plus npy header


def test_round_offset_numbers_rounds_of_a_resumed_run():
    strategy, saved = make_strategy(min_fit_clients=1, round_offset=4)
    strategy.aggregate_fit(1, [fit_result("a", [np.array([1.0])], 1)], [])
    assert saved == [(5, 1)]
    assert strategy.history.row(5)["fit_clients"] == 1


def test_weighted_mean_metrics_ignores_non_numeric_values():
    merged = weighted_mean_metrics([(1, {"acc": 0.0, "tag": "x"}), (3, {"acc": 1.0})])
    assert merged == {"acc": pytest.approx(0.75)}


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ([np.array([1.0, 2.0])], "do not match the model's"),
        ([np.array([np.nan])], "NaN or infinity"),
        (None, "tensors do not parse"),
    ],
    ids=["wrong-shape", "nan", "garbage"],
)
def test_corrupt_plaintext_updates_are_dropped_with_a_reason(bad, reason, caplog):
    strategy, _ = make_strategy(
        min_fit_clients=1, initial_parameters=ndarrays_to_parameters([np.zeros(1)])
    )
    good = fit_result("a", [np.array([2.0])], 4)
    proxy, corrupt = fit_result("b", bad if bad is not None else [np.zeros(1)], 4)
    if bad is None:
        corrupt.parameters.tensors[0] = b"\x93NUMPY garbage"
    params, _ = strategy.aggregate_fit(1, [good, (proxy, corrupt)], [])
    np.testing.assert_allclose(parameters_to_ndarrays(params)[0], [2.0])
    assert strategy.history.row(1)["fit_failures"] == 1
    assert "client b rejected" in caplog.text
    assert reason in caplog.text


@pytest.mark.parametrize(
    ("every", "rounds", "offset", "evaluated"),
    [(1, 4, 0, [1, 2, 3, 4]), (2, 5, 0, [2, 4, 5]), (3, 4, 0, [3, 4]), (2, 5, 2, [4, 5])],
)
def test_evaluate_every_k_rounds_and_always_the_last(every, rounds, offset, evaluated):
    manager = SimpleClientManager()
    for cid in "abc":
        manager.register(FakeProxy(cid))
    strategy, _ = make_strategy(
        evaluation=EvaluationPlan(every, False, rounds), round_offset=offset,
        min_evaluate_clients=2,
    )  # fmt: skip
    params = ndarrays_to_parameters([np.zeros(2)])
    asked = [
        offset + server_round
        for server_round in range(1, rounds - offset + 1)
        if strategy.configure_evaluate(server_round, params, manager)
    ]
    assert asked == evaluated


def test_with_fit_evaluation_rides_on_the_next_fit_and_only_the_last_round_sends_evaluate():
    plan = EvaluationPlan(every=2, with_fit=True, num_rounds=5)
    assert [r for r in range(1, 6) if plan.sends_evaluate(r)] == [5]
    assert [r for r in range(1, 6) if plan.fit_evaluates_first(r)] == [3, 5]
    manager = SimpleClientManager()
    for cid in "ab":
        manager.register(FakeProxy(cid))
    strategy, _ = make_strategy(evaluation=plan, min_fit_clients=2)
    params = ndarrays_to_parameters([np.zeros(2)])
    configs = [ins.config for _, ins in strategy.configure_fit(3, params, manager)]
    assert all(config[EVALUATE_FIRST_KEY] is True for config in configs)
    assert EVALUATE_FIRST_KEY not in strategy.configure_fit(2, params, manager)[0][1].config


def test_the_prior_evaluation_in_fit_results_is_recorded_for_the_previous_round():
    strategy, _ = make_strategy(min_fit_clients=2)
    prior_a = {"prior_loss": 1.0, "prior_accuracy": 0.5, "prior_examples": 10}
    prior_b = {"prior_loss": 3.0, "prior_accuracy": 0.9, "prior_examples": 30}
    results = [
        fit_result("a", [np.array([1.0])], 100, train_loss=0.2, **prior_a),
        fit_result("b", [np.array([3.0])], 100, train_loss=0.4, **prior_b),
    ]
    _, metrics = strategy.aggregate_fit(4, results, [])
    assert metrics == {"train_loss": pytest.approx(0.3)}  # no prior_* among fit metrics
    row = strategy.history.row(3)
    assert row["eval_clients"] == 2
    assert row["eval_loss"] == pytest.approx((10 * 1.0 + 30 * 3.0) / 40)  # by test examples
    assert row["eval_accuracy"] == pytest.approx((10 * 0.5 + 30 * 0.9) / 40)


def test_plaintext_fedavg_takes_only_the_counts_clients_announced(caplog):
    """Issue 22: a plaintext client claiming 1,000x its examples moved the mean, and one
    claiming 10^9 evaluation examples set the metric. Counts are announced once now."""
    from fakes import FakeProxy, fit_result
    from flwr.common import Code, EvaluateRes, Status, ndarrays_to_parameters
    from flwr.server.client_manager import SimpleClientManager
    from strategies import plain_fedavg

    from fl_app.fl.example_counts import ExampleCounts
    from fl_app.run.history import RunHistory

    announced = {f"c{i}": {"num-examples": 10, "num-eval-examples": 4} for i in range(3)}
    strategy = plain_fedavg(
        history=RunHistory(), initial_parameters=ndarrays_to_parameters([np.zeros(2)]),
        example_counts=ExampleCounts(lambda rnd, asked, _: {p.cid: announced[p.cid] for p in asked},
                                     max_examples=10**6),
        min_fit_clients=2, min_available_clients=1,
    )  # fmt: skip
    manager = SimpleClientManager()
    for cid in announced:
        manager.register(FakeProxy(cid))
    strategy.counts.learn(1, list(manager.all().values()))  # the round's count query
    strategy.configure_fit(1, strategy.latest_parameters, manager)
    results = [fit_result("c0", [np.ones(2)], 10), fit_result("c1", [np.ones(2)], 10),
               fit_result("c2", [np.full(2, 100.0)], 10_000)]  # fmt: skip
    params, _ = strategy.aggregate_fit(1, results, [])
    np.testing.assert_allclose(parameters_to_ndarrays(params)[0], 1.0)
    assert "num_examples=10000 differs from the 10 it announced" in caplog.text
    ok = EvaluateRes(Status(Code.OK, "ok"), 0.5, 4, {"accuracy": 0.5})
    liar = EvaluateRes(Status(Code.OK, "ok"), 0.0, 10**9, {"accuracy": 1.0})
    _, metrics = strategy.aggregate_evaluate(1, [(FakeProxy("c0"), ok), (FakeProxy("c2"), liar)],
                                             [])  # fmt: skip
    assert metrics["accuracy"] == 0.5
