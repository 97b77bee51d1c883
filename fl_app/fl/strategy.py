"""FedAvg that records metrics and bytes per round and checkpoints every round."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from logging import INFO, WARNING
from typing import Any, Protocol

import numpy as np
from flwr.common import EvaluateRes, FitRes, Parameters, Scalar, parameters_to_ndarrays
from flwr.common.logger import log
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg

from fl_app.artifacts import RunHistory
from fl_app.fl.client import SAMPLED_KEY


class WireMeter(Protocol):
    """Running totals of message bytes (see fl_app.fl.wire.CountingGrid)."""

    bytes_up: int
    bytes_down: int


# Called after every round with (round, global parameters, whether they are encrypted).
RoundEndHook = Callable[[int, Parameters, bool], None]


def payload_bytes(parameters: Parameters) -> int:
    """Bytes of the serialised tensors in `parameters` (protocol overhead excluded)."""
    return sum(len(tensor) for tensor in parameters.tensors)


def weighted_mean_metrics(
    metrics: list[tuple[int, dict[str, Scalar]]],
) -> dict[str, Scalar]:
    """Mean of every numeric metric, weighted by each client's number of examples."""
    total = sum(num for num, _ in metrics)
    if total == 0:
        return {}
    keys = {k for _, m in metrics for k, v in m.items() if isinstance(v, int | float)}
    return {
        key: sum(num * float(m[key]) for num, m in metrics if key in m)
        / sum(num for num, m in metrics if key in m)
        for key in sorted(keys)
    }


def describe_failure(
    failure: tuple[ClientProxy, FitRes | EvaluateRes] | BaseException,
) -> str:
    """A log-safe description of a failed client: who and why, never the payload."""
    if isinstance(failure, BaseException):
        return f"{type(failure).__name__}: {failure}"
    proxy, res = failure
    return f"client {proxy.cid}: {res.status.code.name} {res.status.message}"


def _plaintext_problem(res: FitRes, expected: list[tuple[int, ...]] | None) -> str | None:
    """Why a plaintext update cannot be averaged, or None if it can."""
    if res.num_examples < 1:
        return f"num_examples={res.num_examples}, allowed >= 1"
    try:
        arrays = parameters_to_ndarrays(res.parameters)
    except Exception as err:  # numpy raises several types on bad bytes
        return f"tensors do not parse: {type(err).__name__}"
    shapes = [a.shape for a in arrays]
    if expected is not None and shapes != expected:
        return f"shapes {shapes[:3]}... do not match the model's {expected[:3]}..."
    if not all(np.isfinite(a).all() for a in arrays if np.issubdtype(a.dtype, np.number)):
        return "update contains NaN or infinity"
    return None


class FlAppFedAvg(FedAvg):
    """Flower's FedAvg plus per-round bookkeeping and a round-end hook.

    Round numbers passed to the hooks are the *run's* rounds: a resumed run starts
    the Flower loop at 1 again, so `round_offset` (rounds already completed) is added.
    """

    encrypted = False  # whether `latest_parameters` is an encrypted aggregate
    wire: WireMeter | None = None  # counts message bytes; per-round deltas go to history

    def __init__(
        self,
        *,
        history: RunHistory,
        on_round_end: RoundEndHook | None = None,
        round_offset: int = 0,
        **fedavg_kwargs,
    ) -> None:
        fedavg_kwargs.setdefault("fit_metrics_aggregation_fn", weighted_mean_metrics)
        fedavg_kwargs.setdefault("evaluate_metrics_aggregation_fn", weighted_mean_metrics)
        super().__init__(**fedavg_kwargs)
        self.history = history
        self.round_offset = round_offset
        self.latest_parameters: Parameters | None = self.initial_parameters
        self._on_round_end = on_round_end
        self._round_started: dict[int, float] = {}
        self._wire_mark = (0, 0)

    def __repr__(self) -> str:
        return f"FlAppFedAvg(round_offset={self.round_offset})"

    def _run_round(self, server_round: int) -> int:
        return server_round + self.round_offset

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        # Unlike FedAvg, keep the initial parameters: they are the checkpoint until
        # the first round aggregates.
        return self.initial_parameters

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ):
        rnd = self._run_round(server_round)
        self._round_started[rnd] = time.monotonic()
        instructions = self._prepare(rnd, super().configure_fit(rnd, parameters, client_manager))
        sampled = len(instructions)
        instructions = [
            (proxy, dataclasses.replace(ins, config={**ins.config, SAMPLED_KEY: sampled}))
            for proxy, ins in instructions
        ]
        self.history.record(rnd, fit_sampled=sampled, fit_available=client_manager.num_available())
        sent = sum(payload_bytes(fit_ins.parameters) for _, fit_ins in instructions)
        self.history.add(rnd, "bytes_down", sent)
        return instructions

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        rnd = self._run_round(server_round)
        received = sum(payload_bytes(res.parameters) for _, res in results)
        self.history.add(rnd, "bytes_up", received)
        results, failures = self._screen(rnd, results, list(failures))
        self._log_failures(rnd, "fit", failures)
        self.history.record(rnd, fit_clients=len(results), fit_failures=len(failures))
        if len(results) < self.min_fit_clients:
            log(
                WARNING,
                "round %d: %d fit result(s), at least %d (strategy.min_fit_clients) "
                "needed; keeping the previous global model",
                rnd,
                len(results),
                self.min_fit_clients,
            )
            self._end_round(rnd)
            return None, {}
        parameters, metrics = self._combine(rnd, results, failures)
        if parameters is not None:
            self.latest_parameters = parameters
        self.history.record(rnd, **metrics)
        self._end_round(rnd)
        return parameters, metrics

    def _prepare(self, rnd: int, instructions: list[tuple[ClientProxy, Any]]):
        """Adjust the fit/evaluate instructions of a round (unchanged in plaintext)."""
        return instructions

    def _screen(
        self,
        rnd: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[list[tuple[ClientProxy, FitRes]], list[tuple[ClientProxy, FitRes] | BaseException]]:
        """Move results that must not be aggregated to the failures, with the reason.

        Plaintext: every update must parse and match the global model's shapes with
        finite values (FedAvg would otherwise crash or spread NaNs into the model).
        """
        expected = None
        if self.latest_parameters is not None:
            expected = [a.shape for a in parameters_to_ndarrays(self.latest_parameters)]
        accepted = []
        for proxy, res in results:
            reason = _plaintext_problem(res, expected)
            if reason is None:
                accepted.append((proxy, res))
            else:
                failures.append(ValueError(f"client {proxy.cid} rejected: {reason}"))
        return accepted, failures

    def _combine(
        self,
        rnd: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Aggregate screened results: FedAvg's weighted mean in plaintext."""
        return super().aggregate_fit(rnd, results, failures)

    def evaluate(self, server_round: int, parameters: Parameters):
        rnd = self._run_round(server_round)
        result = super().evaluate(rnd, parameters)
        if result is not None:
            loss, metrics = result
            self.history.record(
                rnd, centralized_loss=loss, centralized_accuracy=metrics.get("accuracy")
            )
        return result

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ):
        rnd = self._run_round(server_round)
        instructions = self._prepare(
            rnd, super().configure_evaluate(rnd, parameters, client_manager)
        )
        sent = sum(payload_bytes(ins.parameters) for _, ins in instructions)
        self.history.add(rnd, "bytes_down", sent)
        return instructions

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        rnd = self._run_round(server_round)
        self._log_failures(rnd, "evaluate", failures)
        loss, metrics = super().aggregate_evaluate(rnd, results, failures)
        self.history.record(
            rnd,
            eval_clients=len(results),
            eval_failures=len(failures),
            eval_loss=loss,
            eval_accuracy=metrics.get("accuracy"),
            eval_seconds=metrics.get("eval_seconds"),
        )
        self._end_round(rnd)
        return loss, metrics

    def _log_failures(
        self,
        rnd: int,
        stage: str,
        failures: list[tuple[ClientProxy, FitRes | EvaluateRes] | BaseException],
    ) -> None:
        for failure in failures:
            log(
                WARNING,
                "round %d %s: dropped %s",
                rnd,
                stage,
                describe_failure(failure),
            )

    def _end_round(self, rnd: int) -> None:
        started = self._round_started.get(rnd)
        if started is not None:
            self.history.record(rnd, round_seconds=round(time.monotonic() - started, 3))
        if self.wire is not None:
            up, down = self.wire.bytes_up, self.wire.bytes_down
            self.history.add(rnd, "wire_bytes_up", up - self._wire_mark[0])
            self.history.add(rnd, "wire_bytes_down", down - self._wire_mark[1])
            self._wire_mark = (up, down)
        log(INFO, "round %d: %s", rnd, self.history.row(rnd))
        if self._on_round_end is not None and self.latest_parameters is not None:
            self._on_round_end(rnd, self.latest_parameters, self.encrypted)
