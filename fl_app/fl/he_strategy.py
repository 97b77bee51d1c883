"""FedAvg under homomorphic encryption: the server only checks and adds ciphertexts."""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from logging import ERROR, WARNING
from typing import Any

from flwr.common import (
    FitRes,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.logger import log
from flwr.server.client_proxy import ClientProxy

from fl_app.crypto.keys import require_public
from fl_app.crypto.packing import Layout
from fl_app.crypto.payload import EncryptedSum, PayloadError, to_arrays, to_payload
from fl_app.crypto.presets import Preset
from fl_app.fl.example_counts import ExampleCounts
from fl_app.fl.protocol import (
    ENCRYPTED_KEY,
    REFERENCE_KEY,
    ROUND_KEY,
    RUN_TAG_KEY,
    SECRET_PATH_KEY,
)
from fl_app.fl.results import Failure, Screened, dropped, split_refusals, weighted_mean_metrics
from fl_app.fl.strategy import RecordingFedAvg


@dataclass
class EncryptedRound(Screened):
    """Screened HE results, already added up: screening deserialises each payload once."""

    encrypted_sum: EncryptedSum | None = None


class HEFedAvg(RecordingFedAvg):
    """RecordingFedAvg whose global model is an encrypted aggregate the server cannot read.

    Clients weight their own updates by n_k / R, where R is the total number of
    examples of the round's sampled clients (`example_counts`, learned once per client).
    The server checks every payload, adds the valid ones under the public context, and
    records the total weight sum(n_k) / R in the aggregate.
    """

    def __init__(
        self,
        *,
        public_context: Any,
        preset: Preset,
        layout: Layout,
        example_counts: ExampleCounts,
        encrypted: bool = False,
        simulation_secret_path: str = "",
        **kwargs: Any,
    ) -> None:
        if kwargs.get("evaluate_fn") is not None:
            raise ValueError("centralised evaluation needs plaintext weights; HE has none")
        super().__init__(example_counts=example_counts, **kwargs)
        self.public_context = require_public(public_context, "the server's HE context")
        self.preset = preset
        self.layout = layout
        self.encrypted = encrypted
        self._simulation_secret_path = simulation_secret_path
        self._reference: dict[int, float] = {}
        self.run_tag = secrets.token_hex(8)  # updates are bound to "<run_tag>/<round>"
        # The global model before the latest aggregate: what a refused aggregate gives
        # way to (in memory; a restarted server keeps the checkpoint it has).
        self._previous: tuple[Parameters | None, bool] = (self.latest_parameters, encrypted)

    def __repr__(self) -> str:
        return f"HEFedAvg(preset={self.preset.name}, round_offset={self.round_offset})"

    def complete_instructions(self, rnd: int, instructions: list[tuple[ClientProxy, Any]]):
        """Leave out clients of unknown example count; announce R and the payload kind."""
        kept = self.example_counts.known(rnd, instructions)
        # Fit and evaluate of a round share one R: the one announced for fit.
        reference = sum(self.example_counts.get(p.cid) for p, _ in kept)
        self._reference.setdefault(rnd, float(reference))
        he_config: dict[str, Scalar] = {
            ENCRYPTED_KEY: self.encrypted,
            REFERENCE_KEY: self._reference[rnd],
            RUN_TAG_KEY: self.run_tag,
            ROUND_KEY: rnd,
        }
        if self._simulation_secret_path:
            he_config[SECRET_PATH_KEY] = self._simulation_secret_path
        return [
            (proxy, dataclasses.replace(ins, config={**ins.config, **he_config}))
            for proxy, ins in kept
        ]

    # ------------------------------------------------------------ refused aggregates
    # Only clients can tell an aggregate is garbage (another key's ciphertexts behind a
    # forged header decrypt to noise); each says so with REFUSED_KEY. When most of the
    # clients that answered a round refuse the global model they received, it is not the
    # global model: its round is recorded as not aggregated (`aggregate_refused`), and
    # the previous one is the global model again (and the checkpoint). One client
    # refusing alone changes nothing: it is that client's failure.

    def configure_fit(self, server_round: int, parameters: Parameters, client_manager):
        # Flower keeps the last aggregate it was given; after a refusal it is not ours.
        return super().configure_fit(server_round, self.latest_parameters, client_manager)

    def configure_evaluate(self, server_round: int, parameters: Parameters, client_manager):
        return super().configure_evaluate(server_round, self.latest_parameters, client_manager)

    def aggregate_fit(self, server_round: int, results, failures):
        rnd = self._run_round(server_round)
        results, refusals = split_refusals(results)
        refused = self._refused_by_clients(rnd - 1, refusals, answered=len(results))
        if refused:  # the rest trained on a model that is not the global one
            failures = [*failures, *(dropped(p, "trained on a refused aggregate") for p, _ in
                                     results)]  # fmt: skip
            results = []
        params, metrics = super().aggregate_fit(server_round, results, [*failures, *refusals])
        return (self.latest_parameters if refused else params), metrics

    def aggregate_evaluate(self, server_round: int, results, failures):
        rnd = self._run_round(server_round)
        results, refusals = split_refusals(results)
        if self._refused_by_clients(rnd, refusals, answered=len(results)):
            results = []
        return super().aggregate_evaluate(server_round, results, [*failures, *refusals])

    def _refused_by_clients(self, rnd: int, refusals: list, *, answered: int) -> bool:
        """Whether round `rnd`'s aggregate is refused (most answers refuse it); if so,
        the previous global model is restored."""
        if not refusals or len(refusals) <= answered or not self.encrypted:
            return False
        reason = str(refusals[0]).split(": ", 1)[-1]
        log(
            WARNING,
            "round %d: its aggregate was refused by %d of %d clients (%s); it is not the "
            "global model, the previous one is",
            rnd, len(refusals), len(refusals) + answered, reason,
        )  # fmt: skip
        self.history.record(rnd, aggregated=False, aggregate_refused=reason)
        self.latest_parameters, self.encrypted = self._previous
        return True

    def screen_results(
        self, rnd: int, results: list[tuple[ClientProxy, FitRes]], failures: list[Failure]
    ) -> EncryptedRound:
        """Check each payload and add the valid ones to this round's encrypted sum.

        A result is refused (that client's failure, not the round's) when its payload is
        malformed, under another key or made for another run or round, or when its
        num_examples differs from the count the client announced for this round's R.
        """
        reference = self._reference.get(rnd)
        screened = EncryptedRound(
            accepted=[],
            failures=failures,
            encrypted_sum=EncryptedSum(self.public_context, self.preset, self.layout),
        )
        for proxy, res in results:
            try:
                vectors = self._checked_vectors(
                    rnd, proxy.cid, res, reference, screened.encrypted_sum
                )
            except PayloadError as err:
                screened.failures.append(PayloadError(f"client {proxy.cid} rejected: {err}"))
                continue
            screened.encrypted_sum.add(vectors, res.num_examples / reference)
            screened.accepted.append((proxy, res))
        return screened

    def _checked_vectors(
        self,
        rnd: int,
        cid: str,
        res: FitRes,
        reference: float | None,
        encrypted_sum: EncryptedSum,
    ) -> list[Any]:
        """The ciphertexts of one result, or PayloadError saying why it cannot be added."""
        if reference is None:
            raise PayloadError(f"no weight reference was announced for round {rnd}")
        try:
            payload = to_payload(parameters_to_ndarrays(res.parameters))
        except Exception as err:  # numpy raises several types on bad bytes
            raise PayloadError(f"tensors do not parse: {type(err).__name__}") from err
        vectors = encrypted_sum.check(payload, bound_to=f"{self.run_tag}/{rnd}")
        problem = self.example_counts.mismatch(cid, res.num_examples)
        if problem is not None:
            raise PayloadError(problem)
        return vectors

    def aggregate_screened(
        self, rnd: int, screened: EncryptedRound
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """The encrypted aggregate of the round, unless its total weight overflows."""
        total_weight = screened.encrypted_sum.total_weight
        if self.preset.scheme == "bfv" and total_weight > self.preset.max_total_weight:
            log(
                ERROR,
                "round %d: total weight %.3g exceeds the preset's fixed-point range (%g); "
                "client example counts changed since they were announced; round skipped",
                rnd,
                total_weight,
                self.preset.max_total_weight,
            )
            return None, {}
        aggregate = screened.encrypted_sum.result()
        self._previous = (self.latest_parameters, self.encrypted)
        self.encrypted = True
        metrics = weighted_mean_metrics(
            [(res.num_examples, res.metrics) for _, res in screened.accepted]
        )
        return ndarrays_to_parameters(to_arrays(aggregate)), metrics
