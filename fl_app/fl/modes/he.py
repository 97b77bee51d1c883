"""The HE privacy mode (`privacy=he`): the server adds ciphertexts it cannot read.

One round, r >= 2, as this module sees it (fl_app.fl.strategy calls each step):

1. server, `HEAggregator.instructions`: fix the round's weight reference R = sum of the
   sampled clients' announced n_k; send R, the run tag the update must be bound to, and
   whether the global model sent is encrypted.
2. client, `HECodec.decode`: decrypt the aggregate and divide by its total weight
   (fl_app.crypto.payload.decrypt_aggregate): the FedAvg mean it trains from.
3. client, `HECodec.encode`: encrypt (n_k / R) x weights, bound to "<tag>/<round>".
4. server, `HEAggregator.screen`: check each payload (header, key, round, size, the
   announced n_k) and add the valid ones; `result`: the encrypted sum, its total weight
   sum(n_k) / R in the header, is the new global model.

A round whose aggregate most clients refuse (only they can tell garbage: another key's
ciphertexts decrypt to noise) is not aggregated; the previous model stays global.
"""

from __future__ import annotations

import dataclasses
import secrets
from functools import lru_cache
from logging import ERROR, WARNING
from pathlib import Path
from typing import Any

from flwr.common import (
    FitRes,
    NDArrays,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.logger import log
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg, Strategy

from fl_app.config import ConfigError
from fl_app.config.schema import AppConfig
from fl_app.crypto.integers import decrypt_digits, encrypt_digits, from_digit_sums, to_digits
from fl_app.crypto.keys import load_secret_context, require_preset, require_public
from fl_app.crypto.packing import Layout
from fl_app.crypto.payload import (
    EncryptedSum,
    PayloadError,
    WeightBoundError,
    decrypt_aggregate,
    encrypt_update,
    to_arrays,
    to_payload,
)
from fl_app.crypto.presets import Preset, get_preset
from fl_app.fl import protocol
from fl_app.fl.modes.base import AggregateRefused, Aggregator, Codec, Mode, ServerSetup
from fl_app.fl.results import Failure, Screened, dropped, split_refusals, weighted_mean_metrics
from fl_app.fl.server_keys import ServerKeys
from fl_app.fl.statistics import HEDigitSum, pack, unpack


@lru_cache(maxsize=4)
def secret_context_at(path: str) -> Any:
    """A client's HE secret context, read once per process."""
    return load_secret_context(Path(path))


class HECodec(Codec):
    """The client's edge under HE: decrypt what arrives, encrypt what leaves."""

    def __init__(self, preset: Preset, secret_path: str) -> None:
        self.preset = preset
        self._secret_path = secret_path  # "" = the one the server names (simulation)

    def context(self, config: dict[str, Scalar]) -> Any:
        """The secret context (cached per process), checked against the preset."""
        path = self._secret_path or str(config.get(protocol.SECRET_PATH_KEY, ""))
        if not path:
            raise ValueError(
                "no HE secret context configured: set he.secret_context (or the node "
                f"config key '{protocol.NODE_SECRET_KEY}') to the path of secret.ctx"
            )
        return require_preset(secret_context_at(path), self.preset, path)

    def decode(self, parameters: NDArrays, config: dict[str, Scalar]) -> NDArrays:
        if not config.get(protocol.ENCRYPTED_KEY, False):
            return parameters  # the initial model is public: random init, no data
        try:
            return decrypt_aggregate(self.context(config), self.preset, to_payload(parameters))
        except PayloadError as err:
            raise AggregateRefused(f"the aggregate is refused: {err}") from err

    def encode(
        self, weights: NDArrays, weight: int, config: dict[str, Scalar], names: list[str]
    ) -> NDArrays:
        coefficient = weight / float(config[protocol.REFERENCE_KEY])  # n_k / R
        bound_to = f"{config.get(protocol.RUN_TAG_KEY, '')}/{config.get(protocol.ROUND_KEY, 0)}"
        try:
            payload = encrypt_update(
                self.context(config), self.preset, weights, coefficient, bound_to
            )
        except WeightBoundError as err:  # name the layer, not only the array's position
            raise ValueError(f"{names[err.index]}: {err}") from err
        return to_arrays(payload)

    def encode_statistics(self, moments: Any, bound_to: str, config: dict) -> bytes:
        digits = to_digits(moments)
        return pack(encrypt_digits(self.context(config), self.preset, digits, bound_to))

    def decode_statistics(self, total: bytes, config: dict[str, Scalar]) -> Any:
        return from_digit_sums(decrypt_digits(self.context(config), self.preset, unpack(total)))


class HEAggregator(Aggregator):
    """The server's half under HE: announce R, check and add ciphertexts, never decrypt."""

    def __init__(self, setup: ServerSetup) -> None:
        super().__init__(setup)
        keys = setup.extra["keys"]
        self.public_context = require_public(keys.context, "the server's HE context")
        self.preset: Preset = keys.preset
        self.layout: Layout = setup.extra["layout"]
        self.run_tag = secrets.token_hex(8)  # updates are bound to "<run_tag>/<round>"
        self._secret_path = keys.simulation_secret_path
        self._reference: dict[int, float] = {}
        self._sum: EncryptedSum | None = None  # the round's, from `screen` to `result`
        # The global model before the latest aggregate: what a refused aggregate gives
        # way to (in memory; a restarted server keeps the checkpoint it has).
        self._previous: tuple[Parameters, bool] = (self.current, self.encrypted)

    def instructions(self, rnd: int, instructions: list) -> list:
        """Announce R (fit and evaluate of a round share the one fixed for fit), the run
        tag, and whether the parameters are an encrypted aggregate."""
        reference = sum(self.counts.get(proxy.cid) for proxy, _ in instructions)
        self._reference.setdefault(rnd, float(reference))
        he_config: dict[str, Scalar] = {
            protocol.ENCRYPTED_KEY: self.encrypted,
            protocol.REFERENCE_KEY: self._reference[rnd],
            protocol.RUN_TAG_KEY: self.run_tag,
        }
        if self._secret_path:
            he_config[protocol.SECRET_PATH_KEY] = self._secret_path
        return [
            (proxy, dataclasses.replace(ins, config={**ins.config, **he_config}))
            for proxy, ins in instructions
        ]

    def screen(
        self, rnd: int, results: list[tuple[ClientProxy, FitRes]], failures: list[Failure]
    ) -> Screened:
        """Check each payload and add the valid ones to the round's encrypted sum (each
        payload is deserialised once). A result is refused (that client's failure, not the
        round's) when its payload is malformed, under another key, made for another run
        or round, or its num_examples is not the count it announced for this round's R."""
        results, refusals = split_refusals(results)
        failures = [*failures, *refusals]
        if self._refused_by_clients(rnd - 1, refusals, answered=len(results)):
            failures += [dropped(p, "trained on a refused aggregate") for p, _ in results]
            results = []
        screened = Screened(accepted=[], failures=failures)
        self._sum = EncryptedSum(self.public_context, self.preset, self.layout)
        reference = self._reference.get(rnd)
        for proxy, res in results:
            try:
                vectors = self._checked(rnd, proxy.cid, res, reference)
            except PayloadError as err:
                screened.failures.append(PayloadError(f"client {proxy.cid} rejected: {err}"))
                continue
            self._sum.add(vectors, res.num_examples / reference)
            screened.accepted.append((proxy, res))
        return screened

    def _checked(self, rnd: int, cid: str, res: FitRes, reference: float | None) -> list[Any]:
        """The ciphertexts of one result, or PayloadError saying why it cannot be added."""
        if reference is None:
            raise PayloadError(f"no weight reference was announced for round {rnd}")
        try:
            payload = to_payload(parameters_to_ndarrays(res.parameters))
        except Exception as err:  # numpy raises several types on bad bytes
            raise PayloadError(f"tensors do not parse: {type(err).__name__}") from err
        vectors = self._sum.check(payload, bound_to=f"{self.run_tag}/{rnd}")
        problem = self.counts.mismatch(cid, res.num_examples)
        if problem is not None:
            raise PayloadError(problem)
        return vectors

    def result(self, rnd: int, screened: Screened) -> tuple[Parameters | None, dict[str, Scalar]]:
        """The encrypted aggregate of the round, unless its total weight overflows."""
        total = self._sum
        if not total.total_weight_fits():
            log(ERROR, "round %d: total weight %.3g exceeds the preset's fixed-point range (%g); "
                "client example counts changed since they were announced; round skipped",
                rnd, total.total_weight, self.preset.max_total_weight)  # fmt: skip
            return None, {}
        self._previous = (self.current, self.encrypted)
        self.current = ndarrays_to_parameters(to_arrays(total.result()))
        self.encrypted = True
        accepted = [(res.num_examples, res.metrics) for _, res in screened.accepted]
        return self.current, weighted_mean_metrics(accepted)

    def statistics_sum(self, length: int) -> HEDigitSum:
        where = {protocol.SECRET_PATH_KEY: self._secret_path} if self._secret_path else {}
        return HEDigitSum(self.public_context, self.preset, length, self.run_tag, where)

    def evaluations(self, rnd: int, results: list, failures: list) -> tuple[list, list]:
        """Evaluations, without those refusing the aggregate (none if most refuse it)."""
        results, refusals = split_refusals(results)
        if self._refused_by_clients(rnd, refusals, answered=len(results)):
            results = []
        return results, [*failures, *refusals]

    def _refused_by_clients(self, rnd: int, refusals: list, *, answered: int) -> bool:
        """Whether round `rnd`'s aggregate is refused (most answers refuse it); if so,
        the previous global model is restored. One client refusing alone changes
        nothing: it is that client's failure."""
        if not refusals or len(refusals) <= answered or not self.encrypted:
            return False
        reason = str(refusals[0]).split(": ", 1)[-1]
        log(WARNING, "round %d: its aggregate was refused by %d of %d clients (%s); it is not "
            "the global model, the previous one is",
            rnd, len(refusals), len(refusals) + answered, reason)  # fmt: skip
        self.history.record(rnd, aggregated=False, aggregate_refused=reason)
        self.current, self.encrypted = self._previous
        return True


class HEMode(Mode):
    """privacy=he: clients weight and encrypt, the server adds (see the module)."""

    def codec(self, cfg: AppConfig, node_config: dict[str, Any]) -> Codec:
        secret = cfg.he.secret_context or str(node_config.get(protocol.NODE_SECRET_KEY, ""))
        return HECodec(get_preset(cfg.he.preset), secret)

    def aggregator(self, setup: ServerSetup) -> Aggregator:
        return HEAggregator(setup)

    def server_keys(self, cfg: AppConfig, run_dir: Path, *, generate: bool) -> ServerKeys:
        return ServerKeys.load(cfg, run_dir, generate=generate)

    def check_algorithm(self, algorithm: Strategy) -> None:
        """Only an algorithm whose new model is the weighted mean runs under HE: the
        server never sees the aggregate, so it cannot take an optimiser step on it."""
        if type(algorithm).aggregate_fit is not FedAvg.aggregate_fit:
            raise ConfigError(
                f"strategy.algorithm {type(algorithm).__name__} is invalid with privacy=he: "
                "it computes the new model from the aggregate on the server, which under HE "
                "only ever holds ciphertexts. Allowed under HE: fedavg, fedprox (or an "
                "algorithm that changes only what clients are sent); for fedavgm, fedadam "
                "or fedyogi use privacy=secagg (the server sees only the sum)"
            )
