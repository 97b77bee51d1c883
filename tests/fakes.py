"""Fake Flower handles and results for strategy tests (imported as `from fakes import ...`)."""

from __future__ import annotations

import numpy as np
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
from flwr.server.client_proxy import ClientProxy


class FakeProxy(ClientProxy):
    """A client handle for strategy tests; the strategy never calls it."""

    def get_properties(self, ins, timeout, group_id):  # pragma: no cover
        raise NotImplementedError

    def get_parameters(self, ins, timeout, group_id):  # pragma: no cover
        raise NotImplementedError

    def fit(self, ins, timeout, group_id):  # pragma: no cover
        raise NotImplementedError

    def evaluate(self, ins, timeout, group_id):  # pragma: no cover
        raise NotImplementedError

    def reconnect(self, ins, timeout, group_id):  # pragma: no cover
        raise NotImplementedError


def fit_result(cid: str, arrays: list[np.ndarray], num_examples: int, **metrics):
    """A successful FitRes as a client would send it."""
    res = FitRes(
        status=Status(code=Code.OK, message="Success"),
        parameters=ndarrays_to_parameters(arrays),
        num_examples=num_examples,
        metrics=metrics,
    )
    return FakeProxy(cid), res
