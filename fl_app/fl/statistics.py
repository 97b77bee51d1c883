"""Federated statistics: the global mean and std of `preprocess: standardize`, summed
under the run's privacy mode before round 1, instead of each holder's own.

1. The first example-count query (fl_app.fl.example_counts) carries STATS_REQUEST_KEY.
   Each client answers, with its counts, STATS_KEY: its training split's moments
   (fl_app.ml.statistics: n, sums, sums of squares) as exact fixed-point digits
   (fl_app.crypto.integers) — in the clear under privacy=none, encrypted under he.
2. `ServerStatistics.take` checks and adds each answer (under HE: ciphertexts, never
   decrypted); a malformed one is that client's statistics dropped, with the reason.
3. `close`, after that query: the sum is fixed for the run and written beside the
   checkpoint (statistics.json, 0600; a resumed run reuses it). Every fit and evaluate
   instruction carries it (STATS_TOTAL_KEY).
4. Each client decodes the total (decrypts it under HE) and scales its data with the
   global mean and std; `fl-app decrypt` (and a plaintext run's model.keras) puts them
   in front of the model as Normalization layers, so the model takes raw inputs.
"""

from __future__ import annotations

import struct
from logging import INFO, WARNING
from pathlib import Path
from typing import Any

import numpy as np
from flwr.common import Scalar
from flwr.common.logger import log

from fl_app.crypto.header import PayloadError
from fl_app.crypto.integers import DIGITS, digit_sum, from_digit_sums, max_holders
from fl_app.fl.protocol import STATS_KEY, STATS_REQUEST_KEY, STATS_TOTAL_KEY
from fl_app.run.checkpoint import load_statistics, save_statistics


def pack(blobs: list[bytes]) -> bytes:
    """Several byte strings as one (a config value is one), each after its length."""
    return b"".join(struct.pack("<I", len(b)) + b for b in blobs)


def unpack(blob: bytes) -> list[bytes]:
    parts, at = [], 0
    while at < len(blob):
        if at + 4 > len(blob):
            raise PayloadError("statistics payload is truncated")
        (size,) = struct.unpack_from("<I", blob, at)
        parts.append(blob[at + 4 : at + 4 + size])
        at += 4 + size
    if at != len(blob):
        raise PayloadError("statistics payload is truncated")
    return parts


class PlainDigitSum:
    """privacy=none: digits added in the clear, each holder's checked as far as the
    server can see it (its count is its announced examples, its squares are >= 0)."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.total = np.zeros(length, dtype=np.int64)
        self.request: dict[str, Scalar] = {STATS_REQUEST_KEY: ""}

    def take(self, blob: bytes, examples: int) -> None:
        if len(blob) != 8 * self.length:
            raise ValueError(f"{len(blob) // 8} statistics digits, expected {self.length}")
        digits = np.frombuffer(blob, dtype="<i8")
        if np.any(np.abs(digits) > 1 << 15):
            raise ValueError("statistics digits outside the balanced digit range")
        values = from_digit_sums(digits)
        width = (len(values) - 1) // 2
        if values[0] != examples:
            raise ValueError(f"statistics of {values[0]:g} rows, it announced {examples}")
        if np.any(values[1 + width :] < 0):
            raise ValueError("a negative sum of squares")
        self.total += digits

    def result(self) -> bytes:
        return self.total.astype("<i8").tobytes()

    def values(self, total: bytes) -> np.ndarray | None:
        return from_digit_sums(np.frombuffer(total, dtype="<i8"))


class HEDigitSum:
    """privacy=he: encrypted digit payloads, checked (key, form, size, run) and added."""

    def __init__(
        self, public_ctx: Any, preset: Any, length: int, run_tag: str, request: dict
    ) -> None:
        self._sum = digit_sum(public_ctx, preset, length)
        self._limit = max_holders(preset)
        self.bound_to = f"{run_tag}/statistics"
        self.request = {**request, STATS_REQUEST_KEY: self.bound_to}  # + where keys are

    def take(self, blob: bytes, examples: int) -> None:
        if self._sum.count >= self._limit:
            raise ValueError(f"more than {self._limit} holders' statistics cannot be added")
        self._sum.add(self._sum.check(unpack(blob), bound_to=self.bound_to), 1.0)

    def result(self) -> bytes:
        return pack(self._sum.result())

    def values(self, total: bytes) -> None:
        return None  # the server cannot read them


class ServerStatistics:
    """The run's federated statistics on the server (see the module)."""

    def __init__(self, moments: int, run_dir: Path) -> None:
        self.length = moments * DIGITS  # digits of [n, sums, sums of squares]
        self.run_dir = run_dir
        self._sum: PlainDigitSum | HEDigitSum | None = None
        self.total: bytes | None = None
        self.holders = 0
        if saved := load_statistics(run_dir):  # resumed: the statistics the model knows
            self.total, self.holders = saved["total"], saved["holders"]

    def attach(self, digit_sum: PlainDigitSum | HEDigitSum) -> None:
        self._sum = digit_sum

    def request(self) -> dict[str, Scalar]:
        """What the example-count query adds: the request, while the sum is open."""
        return dict(self._sum.request) if self.total is None and self._sum else {}

    def take(self, cid: str, answer: dict[str, Scalar], examples: int) -> None:
        """Add client `cid`'s statistics, or log why they are dropped."""
        if self.total is not None or self._sum is None:
            return
        blob = answer.get(STATS_KEY)
        try:
            if not isinstance(blob, bytes):
                raise ValueError("it sent no statistics")
            self._sum.take(blob, examples)
            self.holders += 1
        except (ValueError, PayloadError) as err:
            log(WARNING, "federated statistics: client %s dropped: %s", cid, err)

    def close(self) -> None:
        """Fix the sum (after the first query); refuse a run none contributed to."""
        if self.total is not None:
            return
        if self.holders == 0:
            raise RuntimeError(
                "no client sent usable federated statistics (task.preprocess: standardize "
                "without task.preprocess_stats): nothing to scale the data with"
            )
        self.total = self._sum.result()
        save_statistics(self.run_dir, self.total, holders=self.holders, encrypted=self.encrypted)
        log(INFO, "federated statistics: the sum of %d holders' is fixed", self.holders)

    @property
    def encrypted(self) -> bool:
        return isinstance(self._sum, HEDigitSum)

    def config(self) -> dict[str, Scalar]:
        """What every instruction carries once the sum is fixed."""
        return {} if self.total is None else {STATS_TOTAL_KEY: self.total}

    def values(self) -> np.ndarray | None:
        """The summed moments, where the server may read them (privacy=none)."""
        if self.total is None or self._sum is None:
            return None
        return self._sum.values(self.total)
