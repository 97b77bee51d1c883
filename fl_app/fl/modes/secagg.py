"""The SecAgg+ privacy mode (`privacy=secagg`): Flower's SecAgg+ workflow, whose
server checks each masked vector's shapes before adding it.

Flower's `SecAggPlusWorkflow` sums the clients' masked vectors unchecked: one client
whose vector has other shapes than the model's ended the ServerApp with numpy's
broadcast error, and the honest clients' round with it. Here a vector that does not
parse, or whose shapes are not (1,) — the weight factor — followed by the model's, is
that client's failure, and the client counts as dropped after it shared its keys: the
unmasking stage then reconstructs its pairwise masks from the survivors' shares, as for
any SecAgg+ dropout, so the sum of the others comes out exact.
"""

from __future__ import annotations

from typing import Any

from flwr.common import bytes_to_ndarray, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.compat.common import recorddict_compat as compat
from flwr.server.workflow import SecAggPlusWorkflow

from fl_app.config.schema import AppConfig
from fl_app.fl.modes.base import Mode


class ScreenedSecAggPlusWorkflow(SecAggPlusWorkflow):
    """Flower's SecAgg+ workflow, with the masked vectors screened (see the module)."""

    def collect_masked_vectors_stage(self, grid: Any, context: Any, state: Any) -> bool:
        some_fit = next(iter(state.nid_to_fitins.values()), None)
        if some_fit is None:
            return super().collect_masked_vectors_stage(grid, context, state)
        model = parameters_to_ndarrays(compat.recorddict_to_fitins(some_fit, True).parameters)
        expected = [(1,), *(a.shape for a in model)]
        return super().collect_masked_vectors_stage(_Screening(grid, expected, state), context,
                                                    state)  # fmt: skip


class _Screening:
    """A Grid whose replies with a masked vector of the wrong form are left out (and
    recorded as that client's failure)."""

    def __init__(self, grid: Any, expected: list[tuple[int, ...]], state: Any) -> None:
        self._grid, self._expected, self._state = grid, expected, state

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Any, *args: Any, **kwargs: Any) -> list[Any]:
        kept = []
        for reply in self._grid.send_and_receive(messages, *args, **kwargs):
            problem = None if reply.has_error() else self._problem(reply)
            if problem is None:
                kept.append(reply)
                continue
            proxy = self._state.nid_to_proxies.get(reply.metadata.src_node_id)
            cid = proxy.cid if proxy is not None else reply.metadata.src_node_id
            self._state.failures.append(ValueError(f"client {cid} rejected: {problem}"))
        return kept

    def _problem(self, reply: Any) -> str | None:
        try:
            vector = reply.content.config_records[RECORD_KEY_CONFIGS][Key.MASKED_PARAMETERS]
            shapes = [bytes_to_ndarray(blob).shape for blob in vector]
        except Exception as err:  # numpy raises several types on bad bytes
            return f"masked vector does not parse: {type(err).__name__}"
        if shapes != self._expected:
            return f"masked vector of shapes {shapes[:3]}..., expected {self._expected[:3]}..."
        return None


class SecAggMode(Mode):
    """privacy=secagg: Flower's SecAgg+ fit step around the unchanged algorithm; the
    server's aggregator gets one unmasked sum and checks it like a plaintext update."""

    counts_examples = False  # SecAgg+ caps each weight in its own protocol

    def fit_workflow(self, cfg: AppConfig) -> SecAggPlusWorkflow:
        secagg = cfg.privacy
        return ScreenedSecAggPlusWorkflow(
            num_shares=_count_or_share(secagg.num_shares),
            reconstruction_threshold=_count_or_share(secagg.reconstruction_threshold),
            clipping_range=secagg.clipping_range,
            quantization_range=secagg.quantization_range,
        )


def _count_or_share(value: float) -> int | float:
    """SecAgg+ takes a number of clients (>= 1) or a share of them (< 1)."""
    return int(value) if value >= 1 else value
