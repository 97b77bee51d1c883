"""The Flower Strategy of every run: an algorithm inside, a privacy mode around it.

The algorithm (`strategy=`: Flower's FedAvg, FedProx, FedAdam, ...) chooses the clients
of a round and, where the mode lets the server see the aggregate, computes the new
global model. The privacy mode's aggregator (fl_app.fl.modes) screens and combines what
clients send. This class adds what a run needs around both: the run's round numbers
(a resumed run starts Flower's loop at 1 again), the example counts clients announced,
the federated statistics, the record of each round and the checkpoint after it.

One fit round, in order: `configure_fit` (the algorithm samples; clients of unknown
count are left out; the mode adds its keys) -> clients train -> `aggregate_fit`
(one result per client; evaluations and DP reports split off; the mode screens; enough
results? the mode's result is the new global model) -> the checkpoint.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from logging import WARNING

from flwr.common import EvaluateRes, FitRes, Parameters, Scalar
from flwr.common.logger import log
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import Strategy

from fl_app.fl.evaluation import EvaluationPlan, bounded_evaluations, split_prior_evaluation
from fl_app.fl.example_counts import ExampleCounts
from fl_app.fl.modes import Aggregator
from fl_app.fl.modes.base import Instructions
from fl_app.fl.protocol import EVALUATE_FIRST_KEY, ROUND_KEY, SAMPLED_KEY
from fl_app.fl.results import (
    Failure,
    describe_failure,
    holder_privacy,
    one_per_client,
    payload_bytes,
    weighted_mean_metrics,
)
from fl_app.fl.wire import WireMeter
from fl_app.run.history import RunHistory

# Called after every round with (round, global parameters, whether they are encrypted).
RoundEndHook = Callable[[int, Parameters, bool], None]
# Called once per round when its record is complete (fit, and evaluation if any).
RoundCompleteHook = Callable[[int], None]


class FederatedStrategy(Strategy):
    """`algorithm` wrapped by the privacy mode's `aggregator` (see the module)."""

    wire: WireMeter | None = None  # counts message bytes; per-round deltas go to history
    statistics: object = None  # fl_app.fl.statistics.ServerStatistics (standardize, federated)

    def __init__(
        self,
        algorithm: Strategy,
        aggregator: Aggregator,
        *,
        history: RunHistory,
        counts: ExampleCounts | None,
        min_fit_clients: int,
        evaluation: EvaluationPlan | None = None,
        combine: Callable[[list], dict[str, Scalar]] = weighted_mean_metrics,
        round_offset: int = 0,
        on_round_end: RoundEndHook | None = None,
        on_round_complete: RoundCompleteHook | None = None,
    ) -> None:
        self.algorithm = algorithm
        self.aggregator = aggregator
        self.history = history
        self.counts = counts  # counts each client announced, once (None: SecAgg+)
        self.min_fit_clients = min_fit_clients
        self.evaluation = evaluation or EvaluationPlan()
        self.combine = combine  # the clients' evaluations -> the round's metrics
        self.round_offset = round_offset
        self._on_round_end = on_round_end
        self._on_round_complete = on_round_complete
        self._round_started: dict[int, float] = {}
        self._wire_mark = (0, 0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.algorithm!r}, round_offset={self.round_offset})"

    @property
    def encrypted(self) -> bool:
        """Whether the global model is an encrypted aggregate."""
        return self.aggregator.encrypted

    @property
    def latest_parameters(self) -> Parameters:
        """The global model as the server holds it (what the checkpoint saves)."""
        return self.aggregator.current

    # ------------------------------------------------------------ Flower's Strategy API
    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return self.aggregator.current  # the checkpoint's until round 1 of this process

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ):
        # `parameters` is Flower's copy of the last aggregate; after a refused one, the
        # global model is the aggregator's, not that (`_global`)
        rnd = self._run_round(server_round)
        self._round_started[rnd] = time.monotonic()
        instructions = self._completed(
            rnd, self.algorithm.configure_fit(rnd, self._global(parameters), client_manager)
        )
        sampled = len(instructions)
        self.history.record(rnd, fit_sampled=sampled, fit_available=client_manager.num_available())
        extra: dict[str, Scalar] = {SAMPLED_KEY: sampled}
        if self.evaluation.fit_evaluates_first(rnd):
            extra[EVALUATE_FIRST_KEY] = True  # the model of round rnd - 1, before training
        return self._counted(rnd, _with_config(instructions, extra))

    def aggregate_fit(
        self, server_round: int, results: list[tuple[ClientProxy, FitRes]], failures: list[Failure]
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        rnd = self._run_round(server_round)
        self.history.add(rnd, "bytes_up", sum(payload_bytes(r.parameters) for _, r in results))
        results, duplicates = one_per_client(results)
        results, prior, refused = split_prior_evaluation(results, self.eval_limit, self.combine)
        for reason in refused:
            log(WARNING, "round %d evaluation (with fit): dropped %s", rnd - 1, reason)
        if prior:
            self.history.record(rnd - 1, **prior)
        results, spent = holder_privacy(results)
        self.history.record(rnd, **spent)
        screened = self.aggregator.screen(rnd, results, [*failures, *duplicates])
        self._log_failures(rnd, "fit", screened.failures)
        accepted = len(screened.accepted)
        self.history.record(rnd, fit_clients=accepted, fit_failures=len(screened.failures))
        parameters, metrics = None, {}
        if accepted >= self.min_fit_clients:
            parameters, metrics = self.aggregator.result(rnd, screened)
        else:
            log(
                WARNING,
                "round %d: %d fit result(s), at least %d (strategy.min_fit_clients) "
                "needed; keeping the previous global model",
                rnd, accepted, self.min_fit_clients,
            )  # fmt: skip
        # Only a round whose aggregate became the global model counts as completed.
        self.history.record(rnd, aggregated=parameters is not None, **metrics)
        self._end_round(rnd)
        return parameters, metrics

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ):
        rnd = self._run_round(server_round)
        instructions = []  # none: not this round, or with the next fit; Flower skips it
        if self.evaluation.sends_evaluate(rnd):
            instructions = self._completed(
                rnd,
                self.algorithm.configure_evaluate(rnd, self._global(parameters), client_manager),
            )
        if not instructions:
            self._complete(rnd)  # no aggregate_evaluate follows
        return self._counted(rnd, instructions)

    def aggregate_evaluate(
        self, server_round: int, results: list[tuple[ClientProxy, EvaluateRes]], failures: list
    ) -> tuple[float | None, dict[str, Scalar]]:
        rnd = self._run_round(server_round)
        results, failures = bounded_evaluations(results, failures, self.eval_limit)
        results, failures = self.aggregator.evaluations(rnd, results, failures)
        self._log_failures(rnd, "evaluate", failures)
        loss, metrics = self.algorithm.aggregate_evaluate(rnd, results, failures)
        self.history.record(
            rnd,
            eval_clients=len(results),
            eval_failures=len(failures),
            eval_loss=loss,
            eval_seconds=metrics.get("eval_seconds"),
            **{f"eval_{k}": v for k, v in metrics.items() if k != "eval_seconds"},
        )
        self._end_round(rnd)
        self._complete(rnd)
        return loss, metrics

    def evaluate(self, server_round: int, parameters: Parameters):
        """Centralised evaluation, when the algorithm was given an `evaluate_fn`."""
        rnd = self._run_round(server_round)
        result = self.algorithm.evaluate(rnd, self.aggregator.current)
        if result is not None:
            loss, metrics = result
            self.history.record(
                rnd, centralized_loss=loss, **{f"centralized_{k}": v for k, v in metrics.items()}
            )
        return result

    def eval_limit(self, cid: str) -> int | None:  # what `cid`'s evaluation may weigh
        return None if self.counts is None else self.counts.eval_limit(cid) or 0

    # ------------------------------------------------------------ bookkeeping
    def _run_round(self, server_round: int) -> int:
        return server_round + self.round_offset

    def _global(self, flowers: Parameters) -> Parameters:
        """The global model: the aggregator's, Flower's copy only before there is one."""
        return flowers if self.aggregator.current is None else self.aggregator.current

    def _completed(self, rnd: int, instructions: Instructions) -> Instructions:
        """`instructions` of clients whose example count is known, with the run's round
        and what the privacy mode adds."""
        if self.counts is not None:
            instructions = self.counts.known(rnd, instructions)
        extra = {ROUND_KEY: rnd, **(self.statistics.config() if self.statistics else {})}
        return self.aggregator.instructions(rnd, _with_config(instructions, extra))

    def _counted(self, rnd: int, instructions: Instructions) -> Instructions:
        """`instructions`, their parameter bytes added to the round's `bytes_down`."""
        self.history.add(
            rnd, "bytes_down", sum(payload_bytes(i.parameters) for _, i in instructions)
        )
        return instructions

    def _log_failures(self, rnd: int, stage: str, failures: list[Failure]) -> None:
        """A warning per dropped client, and who and why in the round's record."""
        reasons = [describe_failure(failure) for failure in failures]
        for reason in reasons:
            log(WARNING, "round %d %s: dropped %s", rnd, stage, reason)
        if reasons:
            self.history.record(rnd, **{f"{stage}_dropped": reasons})

    def _complete(self, rnd: int) -> None:
        if self._on_round_complete is not None:
            self._on_round_complete(rnd)

    def _end_round(self, rnd: int) -> None:
        started = self._round_started.get(rnd)
        if started is not None:
            self.history.record(rnd, round_seconds=round(time.monotonic() - started, 3))
        if self.wire is not None:
            up, down = self.wire.bytes_up, self.wire.bytes_down
            self.history.add(rnd, "wire_bytes_up", up - self._wire_mark[0])
            self.history.add(rnd, "wire_bytes_down", down - self._wire_mark[1])
            self._wire_mark = (up, down)
        if self._on_round_end is not None and self.aggregator.current is not None:
            self._on_round_end(rnd, self.aggregator.current, self.aggregator.encrypted)


def _with_config(instructions: Instructions, extra: dict[str, Scalar]) -> Instructions:
    return [
        (proxy, dataclasses.replace(ins, config={**ins.config, **extra}))
        for proxy, ins in instructions
    ]
