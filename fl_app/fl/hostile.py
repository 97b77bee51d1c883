"""A hostile participant, for tests and demos (config `fault.hostile`, off by default).

In simulation the node of partition 0 trains honestly, then sends, in round r, the
malformation `fault.hostile[(r - 1) % len]` in place of its honest result: the cases an
attacker or a broken client tries. The server must drop that client — never crash,
never let it move the mean or a metric — and say which client and why. A future
feature adds its own case here and to the end-to-end harness (tests/e2e/test_hostile.py).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
from flwr.client import NumPyClient
from flwr.common import NDArrays, Scalar

from fl_app.crypto.header import Header
from fl_app.crypto.seeded import SeededContext
from fl_app.fl.client import KerasClient
from fl_app.fl.protocol import DP_EPSILON, ROUND_KEY

# case -> what it sends (every mode unless said)
HOSTILE_CASES = {
    "nested_header": "a first tensor of 50,000 '[' (JSON nested past Python's stack)",
    "overflow_header": "a header whose count is 1e400 (HE; plaintext: a 1e400-long array)",
    "garbage": "random bytes for every tensor",
    "missing_arrays": "only the first tensor",
    "extra_arrays": "its tensors and one more",
    "nan": "its update filled with NaN",
    "count": "its example count times 1,000",
    "eval_count": "an evaluation claiming 10^9 test examples (HE bounds it by the announced)",
    "replay": "its update re-bound to the round before (HE; plaintext: its last result)",
    "dp_report": "a DP report that is not a number (dp_epsilon='')",
    "public_key_upload": "HE seeded: its update encrypted with the public key (full form), "
    "as someone without the secret key could",
    "other_key": "HE: seeded ciphertexts under another secret key behind its genuine header "
    "(the server cannot tell; the clients refuse the aggregate)",
}


def _header_case(case: str) -> bytes:
    if case == "nested_header":
        return b"[" * 50_000
    header = {"version": 1, "preset": "seeded", "scheme": "bfv", "fingerprint": "x",
              "layout": {"shapes": [[2]], "dtypes": ["float32"]}, "count": 1e400}  # fmt: skip
    return json.dumps(header).encode()


class HostileClient(NumPyClient):
    """A KerasClient that sends one chosen malformation per round instead of its result."""

    def __init__(self, inner: KerasClient, cases: list[str], encrypted: bool) -> None:
        self.inner, self.cases, self.encrypted = inner, cases, encrypted
        self._previous: tuple[NDArrays, int, dict[str, Scalar]] | None = None

    def case(self, rnd: int) -> str:
        return self.cases[(max(rnd, 1) - 1) % len(self.cases)]

    def get_properties(self, config: dict[str, Scalar]) -> dict[str, Scalar]:
        return self.inner.get_properties(config)

    def get_parameters(self, config: dict[str, Scalar]) -> NDArrays:
        return self.inner.get_parameters(config)

    def fit(self, parameters: NDArrays, config: dict[str, Scalar]):
        arrays, examples, metrics = honest = self.inner.fit(parameters, config)
        case, previous = self.case(int(config.get(ROUND_KEY, 0))), self._previous
        self._previous = honest
        if case in ("nested_header", "overflow_header"):
            if self.encrypted:
                first = np.frombuffer(_header_case(case), np.uint8)
            else:  # a plaintext update's first array cannot be a header: make it absurd
                first = (
                    np.zeros(2, np.float32)
                    if case == "nested_header"
                    else np.full(3, 1e38, np.float32)
                )
            return [first, *arrays[1:]], examples, metrics
        if case == "garbage":
            rng = np.random.default_rng()
            return [rng.integers(0, 256, a.nbytes, np.uint8) for a in arrays], examples, metrics
        if case == "missing_arrays":
            return arrays[:1], examples, metrics
        if case == "extra_arrays":
            return [*arrays, arrays[-1]], examples, metrics
        if case == "nan":
            return [np.full_like(a, np.nan, dtype=np.float32) for a in arrays], examples, metrics
        if case == "count":
            return arrays, examples * 1000, metrics
        if case == "replay" and self.encrypted:  # what it made for the round before
            header = Header.from_bytes(arrays[0].tobytes())
            tag, _, rnd = header.bound_to.rpartition("/")
            earlier = dataclasses.replace(header, bound_to=f"{tag}/{int(rnd) - 1}")
            return [np.frombuffer(earlier.to_bytes(), np.uint8), *arrays[1:]], examples, metrics
        if case == "replay" and previous is not None:  # (one process: its last result)
            return previous
        if case == "public_key_upload" and self.encrypted:
            owner = self.inner.codec.context(config)  # the context its honest fit used
            return [arrays[0], *(_full_form(owner, blob) for blob in arrays[1:])], \
                examples, metrics  # fmt: skip
        if case == "other_key" and self.encrypted:
            stranger = SeededContext.build(self.inner.codec.preset)
            values = np.zeros(stranger.parms.poly_modulus_degree(), np.int64)
            return [arrays[0], *(np.frombuffer(stranger.encrypt(values), np.uint8)
                                 for _ in arrays[1:])], examples, metrics  # fmt: skip
        if case == "dp_report":
            return arrays, examples, {**metrics, DP_EPSILON: ""}
        return honest  # eval_count (and a first-round replay): the fit is honest

    def evaluate(self, parameters: NDArrays, config: dict[str, Scalar]):
        loss, examples, metrics = self.inner.evaluate(parameters, config)
        if self.case(int(config.get(ROUND_KEY, 0))) == "eval_count":
            return loss, 10**9, {**metrics, "accuracy": 1.0}
        return loss, examples, metrics


def _full_form(owner: SeededContext, blob: np.ndarray) -> np.ndarray:
    """The same values, re-encrypted with the public key only (a full ciphertext)."""
    from fl_app.crypto._tenseal import sealapi
    from fl_app.crypto.memfile import save_bytes

    values = owner.decrypt(owner.load(blob.tobytes()))
    plaintext = sealapi.Plaintext()
    sealapi.BatchEncoder(owner.context).encode(values.tolist(), plaintext)
    forged = sealapi.Ciphertext()
    sealapi.Encryptor(owner.context, owner.public_key).encrypt(plaintext, forged)
    return np.frombuffer(save_bytes(forged.save), np.uint8)
