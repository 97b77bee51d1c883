"""When federated evaluation happens: every k rounds, the last always, and optionally
inside the next round's fit (one message per round instead of two)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from flwr.common import FitRes, Scalar
from flwr.server.client_proxy import ClientProxy

from fl_app.config.schema import StrategyConfig
from fl_app.fl.protocol import (
    METRIC_SIGNATURE_KEY,
    METRIC_STATE_KEY,
    PRIOR_EXAMPLES,
    PRIOR_PREFIX,
)
from fl_app.fl.results import split_metrics, weighted_mean_metrics
from fl_app.ml.metric_states import MetricStates, server_metric_states

MEAN_OF_CLIENTS = "mean_of_clients"  # the metrics a round could not pool, comma-separated
NOT_METRICS = ("eval_seconds", "examples")  # means of clients by nature (times, counts)


@dataclass(frozen=True)
class EvaluationPlan:
    """strategy.evaluate_every and strategy.evaluate_with_fit for a run of `num_rounds`."""

    every: int = 1
    with_fit: bool = False
    num_rounds: int = 0  # the run's last round always evaluates (0: unknown)

    @classmethod
    def of(cls, strategy: StrategyConfig, num_rounds: int) -> EvaluationPlan:
        """The plan of the `strategy` group; evaluate_with_fit=null is true when fit and
        evaluation sample the same share of clients (then they are the same clients)."""
        with_fit = strategy.evaluate_with_fit
        if with_fit is None:
            with_fit = strategy.fraction_evaluate == strategy.fraction_fit
        return cls(strategy.evaluate_every, with_fit, num_rounds)

    def evaluates(self, rnd: int) -> bool:
        """Round `rnd`'s global model is evaluated."""
        return rnd % self.every == 0 or rnd == self.num_rounds

    def sends_evaluate(self, rnd: int) -> bool:
        """Round `rnd` sends evaluate instructions (with_fit: only the last round)."""
        return self.evaluates(rnd) and (not self.with_fit or rnd == self.num_rounds)

    def fit_evaluates_first(self, rnd: int) -> bool:
        """Round `rnd`'s fit clients first evaluate the model of round rnd - 1."""
        return self.with_fit and rnd > 1 and self.evaluates(rnd - 1)


Combine = Callable[[list[tuple[int, dict[str, Scalar]]]], dict[str, Scalar]]


class PooledMetrics:
    """Combines the clients' evaluations of a round: every metric whose state adds up
    (fl_app.ml.metric_states) is computed from the sum of all clients' states, its exact
    value over their pooled test splits; any other is the mean of the clients' values
    weighted by their test examples, and named under MEAN_OF_CLIENTS. One client
    without a usable state (client-level DP sends none) makes the round's metrics means.
    """

    def __init__(self, net: keras.Model) -> None:
        self._net = net
        self._states: MetricStates | bool | None = False  # built at the first use

    def __call__(self, evaluations: list[tuple[int, dict[str, Scalar]]]) -> dict[str, Scalar]:
        means = weighted_mean_metrics(evaluations)
        pooled = {k: v for k, v in self._pooled(evaluations).items() if k in means}
        kept = sorted(k for k in means if k not in pooled and k not in NOT_METRICS)
        return {**means, **pooled, **({MEAN_OF_CLIENTS: ",".join(kept)} if kept else {})}

    def _pooled(self, evaluations: list[tuple[int, dict[str, Scalar]]]) -> dict[str, float]:
        if self._states is False:
            self._states = server_metric_states(self._net)
        states = self._states
        if not isinstance(states, MetricStates) or not evaluations:
            return {}
        total, names = np.zeros(states.size), None
        for examples, metrics in evaluations:
            state = metrics.get(METRIC_STATE_KEY)
            if metrics.get(METRIC_SIGNATURE_KEY) != states.signature:
                return {}
            if not isinstance(state, bytes) or len(state) != 8 * states.size:
                return {}
            values = np.frombuffer(state, dtype="<f8")
            usable = states.summable(values, examples)
            names = usable if names is None else names & usable
            total += values
        return states.pooled(total, names or set())


EvalLimit = Callable[[str], int | None]  # client id -> the most its evaluation may weigh


def over_limit(cid: str, examples: Any, limit: EvalLimit) -> str | None:
    """Why an evaluation claiming `examples` test examples cannot be counted, or None."""
    allowed = limit(cid)
    if allowed is not None and not (isinstance(examples, int) and examples <= allowed):
        return (
            f"client {cid} rejected: its evaluation claims {examples!r} examples, more than "
            f"the {allowed} it announced for its test split"
        )
    return None


def bounded_evaluations(results: list, failures: list, limit: EvalLimit) -> tuple[list, list]:
    """Evaluations within their client's limit; the others as that client's failure
    (one client claiming 10^9 test examples would set the run's metric)."""
    kept, failures = [], list(failures)
    for proxy, res in results:
        reason = over_limit(proxy.cid, res.num_examples, limit)
        if reason is None:
            kept.append((proxy, res))
        else:
            failures.append(ValueError(reason))
    return kept, failures


def split_prior_evaluation(
    results: list[tuple[ClientProxy, FitRes]],
    limit: EvalLimit = lambda cid: None,
    combine: Combine = weighted_mean_metrics,
) -> tuple[list[tuple[ClientProxy, FitRes]], dict[str, Scalar], list[str]]:
    """Fit results without the evaluation of the model their clients received
    (strategy.evaluate_with_fit), that evaluation as a round's `eval_*` record (the
    metrics `combine`d, and how many clients reported), and why evaluations weighing
    more than their client's `limit` were left out."""
    stripped, split = split_metrics(results, lambda key: key.startswith(PRIOR_PREFIX))
    refused, evaluations = [], []
    for cid, m in split:
        examples = m.get(PRIOR_EXAMPLES)
        if (reason := over_limit(cid, examples, limit)) is not None:
            refused.append(reason)
        elif isinstance(examples, int) and examples > 0:
            evaluations.append((examples, {k[len(PRIOR_PREFIX) :]: v for k, v in m.items()}))
    if not evaluations:
        return stripped, {}, refused
    means = combine(evaluations)
    means.pop("examples", None)
    record = {f"eval_{k}" if k != "eval_seconds" else k: v for k, v in means.items()}
    return stripped, {"eval_clients": len(evaluations), **record}, refused
