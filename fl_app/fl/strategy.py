"""FedAvg that records every round, screens results before averaging, and checkpoints."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from logging import WARNING
from typing import Any

from flwr.common import EvaluateRes, FitRes, Parameters, Scalar, parameters_to_ndarrays
from flwr.common.logger import log
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg

from fl_app.fl.evaluation import EvaluationPlan, bounded_evaluations, split_prior_evaluation
from fl_app.fl.example_counts import ExampleCounts
from fl_app.fl.protocol import EVALUATE_FIRST_KEY, SAMPLED_KEY
from fl_app.fl.results import (
    Failure,
    Screened,
    describe_failure,
    holder_privacy,
    one_per_client,
    payload_bytes,
    screen_plaintext,
    weighted_mean_metrics,
)
from fl_app.fl.wire import WireMeter
from fl_app.run.history import RunHistory

EvaluateResults = list[tuple[ClientProxy, EvaluateRes]]

# Called after every round with (round, global parameters, whether they are encrypted).
RoundEndHook = Callable[[int, Parameters, bool], None]
# Called once per round when its record is complete (fit, and evaluation if any).
RoundCompleteHook = Callable[[int], None]


class RecordingFedAvg(FedAvg):
    """Flower's FedAvg plus what a run needs around it.

    It records each round (clients, failures, metrics, bytes, time) in `history`, drops
    fit results that must not be averaged (`screen_results`), and hands the global
    model to `on_round_end` after every round (the checkpoint). Subclasses change a mode
    through `complete_instructions`, `screen_results` and `aggregate_screened`.

    Round numbers are the *run's* rounds: a resumed run starts Flower's loop at 1
    again, so `round_offset` (rounds already completed) is added.
    """

    encrypted = False  # whether `latest_parameters` is an encrypted aggregate
    wire: WireMeter | None = None  # counts message bytes; per-round deltas go to history

    def __init__(
        self,
        *,
        history: RunHistory,
        on_round_end: RoundEndHook | None = None,
        on_round_complete: RoundCompleteHook | None = None,
        round_offset: int = 0,
        evaluation: EvaluationPlan | None = None,
        example_counts: ExampleCounts | None = None,
        **fedavg_kwargs,
    ) -> None:
        fedavg_kwargs.setdefault("fit_metrics_aggregation_fn", weighted_mean_metrics)
        fedavg_kwargs.setdefault("evaluate_metrics_aggregation_fn", weighted_mean_metrics)
        super().__init__(**fedavg_kwargs)
        self.history = history
        self.round_offset = round_offset
        self.evaluation = evaluation or EvaluationPlan()
        self.example_counts = example_counts  # counts each client announced, once
        self.latest_parameters: Parameters | None = self.initial_parameters
        self._on_round_end = on_round_end
        self._on_round_complete = on_round_complete
        self._round_started: dict[int, float] = {}
        self._wire_mark = (0, 0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(round_offset={self.round_offset})"

    # ------------------------------------------------------------ the three hooks
    def complete_instructions(self, rnd: int, instructions: list[tuple[ClientProxy, Any]]):
        """Round `rnd`'s fit and evaluate instructions with this mode's keys, or clients
        left out. Plaintext: only clients whose example counts are known, when asked."""
        counts = self.example_counts
        return instructions if counts is None else counts.known(rnd, instructions)

    def screen_results(
        self, rnd: int, results: list[tuple[ClientProxy, FitRes]], failures: list[Failure]
    ) -> Screened:
        """Move results that must not be aggregated to the failures, with the reason.

        Plaintext: every update must parse and match the global model's shapes with
        finite values (FedAvg would otherwise crash or spread NaNs into the model).
        """
        expected = None
        if self.latest_parameters is not None:
            expected = [a.shape for a in parameters_to_ndarrays(self.latest_parameters)]
        return screen_plaintext(results, failures, expected, self.example_counts)

    def aggregate_screened(
        self, rnd: int, screened: Screened
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """The new global model from the accepted results: FedAvg's weighted mean here."""
        return super().aggregate_fit(rnd, screened.accepted, screened.failures)

    # ------------------------------------------------------------ Flower's Strategy API
    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return self.initial_parameters  # kept (unlike FedAvg): the checkpoint until round 1

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ):
        rnd = self._run_round(server_round)
        self._round_started[rnd] = time.monotonic()
        instructions = self.complete_instructions(
            rnd, super().configure_fit(rnd, parameters, client_manager)
        )
        sampled = len(instructions)
        self.history.record(rnd, fit_sampled=sampled, fit_available=client_manager.num_available())
        extra = {SAMPLED_KEY: sampled}
        if self.evaluation.fit_evaluates_first(rnd):
            extra[EVALUATE_FIRST_KEY] = True  # the model of round rnd - 1, before training
        return self._counted(
            rnd,
            [
                (proxy, dataclasses.replace(ins, config={**ins.config, **extra}))
                for proxy, ins in instructions
            ],
        )

    def aggregate_fit(
        self, server_round: int, results: list[tuple[ClientProxy, FitRes]], failures: list[Failure]
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        rnd = self._run_round(server_round)
        received = sum(payload_bytes(res.parameters) for _, res in results)
        self.history.add(rnd, "bytes_up", received)
        results, duplicates = one_per_client(results)
        results, prior, refused = split_prior_evaluation(results, self.eval_limit)
        for reason in refused:
            log(WARNING, "round %d evaluation (with fit): dropped %s", rnd - 1, reason)
        if prior:
            self.history.record(rnd - 1, **prior)
        results, spent = holder_privacy(results)
        self.history.record(rnd, **spent)
        screened = self.screen_results(rnd, results, [*failures, *duplicates])
        self._log_failures(rnd, "fit", screened.failures)
        accepted = len(screened.accepted)
        self.history.record(rnd, fit_clients=accepted, fit_failures=len(screened.failures))
        if accepted < self.min_fit_clients:
            log(
                WARNING,
                "round %d: %d fit result(s), at least %d (strategy.min_fit_clients) "
                "needed; keeping the previous global model",
                rnd,
                accepted,
                self.min_fit_clients,
            )
            self.history.record(rnd, aggregated=False)
            self._end_round(rnd)
            return None, {}
        parameters, metrics = self.aggregate_screened(rnd, screened)
        if parameters is not None:
            self.latest_parameters = parameters
        # Only a round whose aggregate became the global model counts as completed.
        self.history.record(rnd, aggregated=parameters is not None, **metrics)
        self._end_round(rnd)
        return parameters, metrics

    def evaluate(self, server_round: int, parameters: Parameters):
        rnd = self._run_round(server_round)
        result = super().evaluate(rnd, parameters)
        if result is not None:
            loss, metrics = result
            self.history.record(
                rnd, centralized_loss=loss, **{f"centralized_{k}": v for k, v in metrics.items()}
            )
        return result

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ):
        rnd = self._run_round(server_round)
        instructions = []  # none: not this round, or with the next fit; Flower skips it
        if self.evaluation.sends_evaluate(rnd):
            instructions = self.complete_instructions(
                rnd, super().configure_evaluate(rnd, parameters, client_manager)
            )
        if not instructions:
            self._complete(rnd)  # no aggregate_evaluate follows
        return self._counted(rnd, instructions)

    def aggregate_evaluate(
        self, server_round: int, results: EvaluateResults, failures: list[Failure]
    ) -> tuple[float | None, dict[str, Scalar]]:
        rnd = self._run_round(server_round)
        results, failures = bounded_evaluations(results, failures, self.eval_limit)
        self._log_failures(rnd, "evaluate", failures)
        loss, metrics = super().aggregate_evaluate(rnd, results, failures)
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

    def eval_limit(self, cid: str) -> int | None:  # what `cid`'s evaluation may weigh
        return None if self.example_counts is None else self.example_counts.eval_limit(cid) or 0

    # ------------------------------------------------------------ bookkeeping
    def _run_round(self, server_round: int) -> int:
        return server_round + self.round_offset

    def _counted(self, rnd: int, instructions: list[tuple[ClientProxy, Any]]):
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
        if self._on_round_end is not None and self.latest_parameters is not None:
            self._on_round_end(rnd, self.latest_parameters, self.encrypted)
