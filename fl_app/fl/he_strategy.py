"""FedAvg under homomorphic encryption: the server only checks and adds ciphertexts."""

from __future__ import annotations

import dataclasses
from logging import ERROR, INFO, WARNING
from typing import Any

from flwr.app import Message
from flwr.common import (
    FitRes,
    GetPropertiesIns,
    MessageTypeLegacy,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.logger import log
from flwr.compat.common import recorddict_compat as compat
from flwr.server.client_proxy import ClientProxy

from fl_app.crypto.keys import require_public
from fl_app.crypto.packing import Layout
from fl_app.crypto.payload import EncryptedSum, PayloadError, to_arrays, to_payload
from fl_app.crypto.presets import Preset
from fl_app.fl.client import EXAMPLES_KEY
from fl_app.fl.he_client import ENCRYPTED_KEY, REFERENCE_KEY, SECRET_PATH_KEY
from fl_app.fl.strategy import FlAppFedAvg, weighted_mean_metrics


class HEFedAvg(FlAppFedAvg):
    """FlAppFedAvg whose global model is an encrypted aggregate the server cannot read.

    Clients weight their own updates by n_k / R, where R is the total number of
    examples of the round's sampled clients (learned once per client through a
    properties query). The server checks every payload, adds the valid ones under
    the public context, and records the total weight sum(n_k) / R in the aggregate.
    """

    def __init__(
        self,
        *,
        public_context: Any,
        preset: Preset,
        layout: Layout,
        max_examples: int,
        encrypted: bool = False,
        secret_hint: str = "",
        query_timeout: float = 600.0,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("evaluate_fn") is not None:
            raise ValueError("centralised evaluation needs plaintext weights; HE has none")
        super().__init__(**kwargs)
        self.public_context = require_public(public_context, "the server's HE context")
        self.preset = preset
        self.layout = layout
        self.max_examples = max_examples
        self.encrypted = encrypted
        self._secret_hint = secret_hint
        self._query_timeout = query_timeout
        self._examples: dict[str, int] = {}
        self._reference: dict[int, float] = {}
        self._round_sum: EncryptedSum | None = None

    def __repr__(self) -> str:
        return f"HEFedAvg(preset={self.preset.name}, round_offset={self.round_offset})"

    def remember_examples(self, counts: dict[str, int]) -> None:
        """Example counts of clients (by cid) known without asking them."""
        self._examples.update(counts)

    # ------------------------------------------------------------ instructions
    def _prepare(self, rnd: int, instructions: list[tuple[ClientProxy, Any]]):
        unknown = [proxy for proxy, _ in instructions if proxy.cid not in self._examples]
        if unknown:
            self._examples.update(self._query_examples(rnd, unknown))
        kept = [(p, ins) for p, ins in instructions if p.cid in self._examples]
        for proxy, _ in instructions:
            if proxy.cid not in self._examples:
                log(
                    WARNING,
                    "round %d: client %s left out: its example count is unknown",
                    rnd,
                    proxy.cid,
                )
        self._reference.setdefault(rnd, float(sum(self._examples[p.cid] for p, _ in kept)))
        he_config: dict[str, Scalar] = {
            ENCRYPTED_KEY: self.encrypted,
            REFERENCE_KEY: self._reference[rnd],
        }
        if self._secret_hint:
            he_config[SECRET_PATH_KEY] = self._secret_hint
        return [
            (proxy, dataclasses.replace(ins, config={**ins.config, **he_config}))
            for proxy, ins in kept
        ]

    def _query_examples(self, rnd: int, proxies: list[ClientProxy]) -> dict[str, int]:
        """Ask clients for their example counts, all in one batch of messages."""
        grid = proxies[0].grid
        by_node = {proxy.node_id: proxy for proxy in proxies}
        messages = [
            Message(
                content=compat.getpropertiesins_to_recorddict(GetPropertiesIns(config={})),
                dst_node_id=proxy.node_id,
                message_type=MessageTypeLegacy.GET_PROPERTIES,
                group_id=str(rnd),
                ttl=self._query_timeout,
            )
            for proxy in proxies
        ]
        counts: dict[str, int] = {}
        for reply in grid.send_and_receive(messages):
            proxy = by_node.get(reply.metadata.src_node_id)
            if proxy is None or reply.has_error():
                continue
            properties = compat.recorddict_to_getpropertiesres(reply.content).properties
            examples = properties.get(EXAMPLES_KEY)
            if isinstance(examples, int) and 1 <= examples <= self.max_examples:
                counts[proxy.cid] = examples
        log(INFO, "round %d: learned example counts of %d client(s)", rnd, len(counts))
        return counts

    # ------------------------------------------------------------ aggregation
    def _screen(self, rnd: int, results: list[tuple[ClientProxy, FitRes]], failures):
        """Check each payload and add the valid ones to this round's encrypted sum."""
        reference = self._reference.get(rnd)
        self._round_sum = EncryptedSum(self.public_context, self.preset, self.layout)
        accepted = []
        for proxy, res in results:
            try:
                if reference is None:
                    raise PayloadError(f"no weight reference was announced for round {rnd}")
                if not 1 <= res.num_examples <= self.max_examples:
                    raise PayloadError(
                        f"num_examples={res.num_examples}, allowed 1..{self.max_examples}"
                    )
                try:
                    payload = to_payload(parameters_to_ndarrays(res.parameters))
                except Exception as err:  # numpy raises several types on bad bytes
                    raise PayloadError(f"tensors do not parse: {type(err).__name__}") from err
                vectors = self._round_sum.check(payload)
            except PayloadError as err:
                failures.append(PayloadError(f"client {proxy.cid} rejected: {err}"))
                continue
            self._examples[proxy.cid] = res.num_examples
            self._round_sum.add(vectors, res.num_examples / reference)
            accepted.append((proxy, res))
        return accepted, failures

    def _combine(self, rnd: int, results, failures) -> tuple[Parameters | None, dict[str, Scalar]]:
        total_weight = self._round_sum.total_weight
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
        aggregate = self._round_sum.result()
        self._round_sum = None
        self.encrypted = True
        metrics = weighted_mean_metrics([(res.num_examples, res.metrics) for _, res in results])
        return ndarrays_to_parameters(to_arrays(aggregate)), metrics
