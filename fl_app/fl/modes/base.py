"""The plaintext privacy mode (`privacy=none`), and the parts every mode has.

A mode is two halves, built in different processes from the same config:

- the client's `Codec`: model weights -> what goes on the wire (`encode`), and what
  arrives -> model weights (`decode`). Training between the two never sees the wire form.
- the server's `Aggregator`: `screen` what arrived (drop what must not be combined, and
  start combining), then `result`: the round's new global model. `current` is the
  global model as the server holds it (ciphertexts under HE).

Who weights: here the *server* weights each client by its num_examples (the algorithm:
Flower's FedAvg, FedAdam, ...); under HE the clients do (fl_app.fl.modes.he).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flwr.common import FitRes, NDArrays, Parameters, Scalar, parameters_to_ndarrays
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import Strategy

from fl_app.config import ModeFacts
from fl_app.config.schema import AppConfig
from fl_app.crypto.integers import from_digit_sums, to_digits
from fl_app.fl.example_counts import ExampleCounts
from fl_app.fl.results import Failure, Screened, screen_plaintext
from fl_app.fl.statistics import PlainDigitSum
from fl_app.run.history import RunHistory

Instructions = list[tuple[ClientProxy, Any]]  # (client, FitIns or EvaluateIns)


class AggregateRefused(ValueError):
    """What arrived is not a global model this client can use (raised by `decode`)."""


class Codec:
    """The client's edge: plaintext weights travel as they are."""

    def decode(self, parameters: NDArrays, config: dict[str, Scalar]) -> NDArrays:
        return parameters

    def encode(
        self, weights: NDArrays, weight: int, config: dict[str, Scalar], names: list[str]
    ) -> NDArrays:
        """What is sent for `weights`; `weight` is the client's aggregation weight and
        `names` the weights' paths (for errors that name a layer)."""
        return weights

    def encode_statistics(self, moments: np.ndarray, bound_to: str, config: dict) -> bytes:
        """A holder's moments as they are sent (fl_app.fl.statistics): exact digits."""
        return to_digits(moments).astype("<i8").tobytes()

    def decode_statistics(self, total: bytes, config: dict[str, Scalar]) -> np.ndarray:
        """The holders' summed moments from the total every instruction carries."""
        return from_digit_sums(np.frombuffer(total, dtype="<i8"))


@dataclass
class ServerSetup:
    """What an aggregator is built from: the algorithm, the global model it starts from
    and the counts the clients announced."""

    algorithm: Strategy  # Flower's strategy (strategy.algorithm)
    initial: Parameters | None  # the global model: initial weights, or the checkpoint's
    encrypted: bool  # whether `initial` is an encrypted aggregate (a resumed HE run)
    history: RunHistory
    counts: ExampleCounts | None  # None: the mode caps weights itself (SecAgg+)
    extra: dict[str, Any] = field(default_factory=dict)  # a mode's own (HE: keys, layout)


class Aggregator:
    """The server's half of privacy=none (and secagg, whose workflow hands over one
    unmasked sum): plaintext checks, then the algorithm's own aggregate."""

    def __init__(self, setup: ServerSetup) -> None:
        self.algorithm = setup.algorithm
        self.current = setup.initial
        self.encrypted = setup.encrypted
        self.history = setup.history
        self.counts = setup.counts

    def instructions(self, rnd: int, instructions: Instructions) -> Instructions:
        """Round `rnd`'s fit or evaluate instructions with what this mode adds."""
        return instructions

    def screen(
        self, rnd: int, results: list[tuple[ClientProxy, FitRes]], failures: list[Failure]
    ) -> Screened:
        """Every update must parse and match the global model's shapes with finite
        values (FedAvg would otherwise crash or spread NaNs into the model), and carry
        the example count its client announced."""
        expected = None  # no global model yet: the first result's shapes are taken
        if self.current is not None:
            expected = [a.shape for a in parameters_to_ndarrays(self.current)]
        return screen_plaintext(results, failures, expected, self.counts)

    def result(self, rnd: int, screened: Screened) -> tuple[Parameters | None, dict[str, Scalar]]:
        """The new global model from the accepted results: the algorithm's aggregate."""
        parameters, metrics = self.algorithm.aggregate_fit(
            rnd, screened.accepted, screened.failures
        )
        if parameters is not None:
            self.current = parameters
        return parameters, metrics

    def evaluations(self, rnd: int, results: list, failures: list) -> tuple[list, list]:
        """The evaluation results that count (all of them here)."""
        return results, failures

    def statistics_sum(self, length: int) -> PlainDigitSum:
        """The sum of the holders' statistics digits (fl_app.fl.statistics)."""
        return PlainDigitSum(length)


class Mode:
    """A privacy mode: its config facts, the client's codec and the server's aggregator."""

    counts_examples = True  # clients announce their example counts before their first round

    def __init__(self, facts: ModeFacts) -> None:
        self.facts = facts

    def codec(self, cfg: AppConfig, node_config: dict[str, Any]) -> Codec:
        return Codec()

    def aggregator(self, setup: ServerSetup) -> Aggregator:
        return Aggregator(setup)

    def server_keys(self, cfg: AppConfig, run_dir: Path, *, generate: bool) -> Any:
        """The server's keys (HE: the public context), None without."""
        return None

    def check_algorithm(self, algorithm: Strategy) -> None:
        """Refuse an algorithm this mode cannot run (plaintext: every one)."""

    def fit_workflow(self, cfg: AppConfig) -> Any:
        """Flower's fit step of a round (None: Flower's default)."""
        return None
