"""Fault injection for tests and demos (config `fault.*`, off by default).

In a round where it is picked, a client either fails its fit (an exception, which
Flower reports to the server as a failed client) or returns a corrupted payload (the
first array cut in half and NaN-filled, so it can neither deserialise as a ciphertext
nor pass as a plaintext update). The server must drop either and go on.
"""

from __future__ import annotations

import zlib

import numpy as np
from flwr.client import NumPyClient
from flwr.common import NDArrays, Scalar

from fl_app.fl.client import KerasClient
from fl_app.fl.protocol import ROUND_KEY


class FaultPlan:
    """Which fault, if any, one client injects in a round: exact shares in simulation."""

    def __init__(self, *, fail: float, corrupt: float, seed: int, slot: int, slots: int) -> None:
        self.fail, self.corrupt, self.seed = fail, corrupt, seed
        self.slot, self.slots = slot, slots

    @classmethod
    def for_node(cls, node_config: dict, *, fail: float, corrupt: float, seed: int) -> FaultPlan:
        if "partition-id" in node_config:  # simulation: exact shares of the clients
            slot, slots = int(node_config["partition-id"]), int(node_config["num-partitions"])
        else:  # deployment: nodes do not know each other; shares are approximate
            slot, slots = zlib.crc32(repr(sorted(node_config.items())).encode()) % 1000, 1000
        return cls(fail=fail, corrupt=corrupt, seed=seed, slot=slot, slots=slots)

    def fault(self, rnd: int) -> str | None:
        """'fail', 'corrupt' or None for this client in round `rnd`."""
        position = (self.slot + 7 * rnd + self.seed) % self.slots
        if position < round(self.fail * self.slots):
            return "fail"
        if position < round((self.fail + self.corrupt) * self.slots):
            return "corrupt"
        return None


def corrupt(arrays: NDArrays) -> NDArrays:
    """A copy of `arrays` whose first array is cut in half and, if it is float, NaN."""
    first = np.array(arrays[0].ravel()[: max(1, arrays[0].size // 2)], copy=True)
    if np.issubdtype(first.dtype, np.floating):
        first[:] = np.nan
    return [first, *arrays[1:]]


class FaultyClient(NumPyClient):
    """A KerasClient that injects the faults its plan picks (tests and demos only)."""

    def __init__(self, inner: KerasClient, plan: FaultPlan) -> None:
        self.inner = inner
        self.plan = plan

    def get_properties(self, config: dict[str, Scalar]) -> dict[str, Scalar]:
        return self.inner.get_properties(config)

    def get_parameters(self, config: dict[str, Scalar]) -> NDArrays:
        return self.inner.get_parameters(config)

    def fit(self, parameters: NDArrays, config: dict[str, Scalar]):
        rnd = int(config.get(ROUND_KEY, 0))
        fault = self.plan.fault(rnd)
        if fault == "fail":
            raise RuntimeError(f"injected failure in round {rnd} (fault.fail_fraction)")
        arrays, num_examples, metrics = self.inner.fit(parameters, config)
        return (corrupt(arrays) if fault == "corrupt" else arrays), num_examples, metrics

    def evaluate(self, parameters: NDArrays, config: dict[str, Scalar]):
        return self.inner.evaluate(parameters, config)
