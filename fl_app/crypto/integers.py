"""Exact sums of real values under BFV: the federated statistics of the holders' data.

A model update is a weighted mean, carried at the preset's fixed point with |w| <= 64.
Statistics are sums (a count, each feature's sum and sum of squares) of any magnitude,
and the sum must be exact. So each value v is carried as the integer
round(v * 2^FRACTION_BITS), of any size, written in DIGITS balanced digits of
DIGIT_BITS bits each (each digit in [-2^(DIGIT_BITS-1), 2^(DIGIT_BITS-1))), one digit
per slot. The slots of K holders add up to at most K * 2^(DIGIT_BITS-1) in magnitude,
within the plain modulus' signed range for K <= `max_holders(preset)`, so the digit
sums read back give the exact sum of the holders' integers, whatever their size.
(No maintained library splits integers across BFV slots; this is the smallest piece.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fl_app.crypto.backends import backend_for
from fl_app.crypto.header import Header, PayloadError
from fl_app.crypto.keys import fingerprint
from fl_app.crypto.packing import Layout, spans
from fl_app.crypto.payload import EncryptedSum
from fl_app.crypto.presets import Preset

FRACTION_BITS = 16  # resolution 2^-16 of every summed value
DIGIT_BITS = 16
DIGITS = 6  # 96 bits: |v| < 2^79 at 2^-16 (a sum of squares of 10^6 values of 10^12)
_BASE = 1 << DIGIT_BITS
_HALF = _BASE >> 1


def to_digits(values: Sequence[float]) -> np.ndarray:
    """`values` at fixed point 2^-FRACTION_BITS, as DIGITS balanced digits each (int64),
    lowest digit first. Refuses a value that is not finite or does not fit."""
    out = np.zeros((len(values), DIGITS), dtype=np.int64)
    limit = 1 << (DIGIT_BITS * DIGITS - 1)
    for row, value in enumerate(values):
        if not np.isfinite(value):
            raise ValueError(f"statistic {row} is {value}: allowed finite numbers")
        rest = round(float(value) * (1 << FRACTION_BITS))  # exact: a Python integer
        if abs(rest) >= limit:
            raise ValueError(f"statistic {row} = {value:.3g} is too large to carry")
        for column in range(DIGITS):
            digit = (rest + _HALF) % _BASE - _HALF
            out[row, column] = digit
            rest = (rest - digit) >> DIGIT_BITS
    return out.reshape(-1)


def from_digit_sums(sums: np.ndarray) -> np.ndarray:
    """The summed values (float64) from the summed digits of `to_digits`."""
    rows = np.asarray(sums, dtype=np.int64).reshape(-1, DIGITS)
    totals = [sum(int(d) << (DIGIT_BITS * i) for i, d in enumerate(row)) for row in rows]
    return np.array([t / (1 << FRACTION_BITS) for t in totals], dtype=np.float64)


def max_holders(preset: Preset) -> int:
    """How many holders' digits can be added without leaving the signed plain range."""
    return max(1, (1 << (preset.plain_modulus_bits - 1)) // _HALF - 1)


def encrypt_digits(ctx, preset: Preset, digits: np.ndarray, bound_to: str) -> list[bytes]:
    """One holder's digits as a payload (header + ciphertexts; the secret context under
    the seeded preset), bound to `bound_to` like an update."""
    if preset.scheme != "bfv":
        raise ValueError(f"he.preset={preset.name!r}: federated statistics need a BFV preset")
    layout = Layout.of([np.zeros(len(digits), np.float32)])
    flat = np.append(np.asarray(digits, dtype=np.int64), 0)  # the (unused) weight slot
    backend = backend_for(preset)
    chunks = [backend.encrypt(ctx, flat[s : s + n]) for s, n in spans(layout, preset)]
    header = Header(preset.name, preset.scheme, fingerprint(ctx), layout, len(chunks),
                    bound_to=bound_to)  # fmt: skip
    return [header.to_bytes(), *chunks]


def digit_sum(public_ctx, preset: Preset, length: int) -> EncryptedSum:
    """The server's sum of holders' digit payloads of `length` digits (never decrypts)."""
    return EncryptedSum(public_ctx, preset, Layout.of([np.zeros(length, np.float32)]))


def decrypt_digits(ctx, preset: Preset, payload: list[bytes]) -> np.ndarray:
    """The summed digits a `digit_sum` result encrypts (needs the secret context)."""
    if not payload:
        raise PayloadError("statistics payload is empty")
    header = Header.from_bytes(payload[0])
    length = header.layout.length
    if header.fingerprint != fingerprint(ctx) or len(payload) - 1 != header.count:
        raise PayloadError("statistics are not of this key, or not whole")
    backend = backend_for(preset)
    parts = [np.asarray(backend.load(ctx, blob).decrypt(), dtype=np.int64) for blob in payload[1:]]
    flat = np.zeros(length + 1, dtype=np.int64)
    for (start, size), values in zip(spans(header.layout, preset), parts, strict=True):
        flat[start : start + size] = values[:size]
    return flat[:-1]
