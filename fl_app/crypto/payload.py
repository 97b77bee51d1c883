"""Self-describing encrypted payloads: encrypt a weighted update, check, sum, decrypt.

A payload is a list of byte strings: a JSON header (fl_app.crypto.header) and one
serialised ciphertext per span of the flattened weights.

Who weights: the *client* multiplies its weights by its coefficient n_k / R (R is the
weight reference the server announces) before encrypting, so the server only adds.
The server records the total weight sum(n_k) / R; a client divides the decrypted sum
by it to obtain the FedAvg mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fl_app.crypto.backends import Context, WeightBoundError, backend_for
from fl_app.crypto.header import Header, PayloadError, check_header
from fl_app.crypto.keys import fingerprint
from fl_app.crypto.packing import Layout, spans
from fl_app.crypto.presets import Preset
from fl_app.crypto.seal_form import NotSeeded

__all__ = ["EncryptedSum", "PayloadError", "WeightBoundError", "decrypt_aggregate",
           "encrypt_update", "to_arrays", "to_payload"]  # fmt: skip


def to_payload(arrays: list[np.ndarray]) -> list[bytes]:
    """The byte strings a list of uint8 arrays carries."""
    return [np.asarray(a, dtype=np.uint8).tobytes() for a in arrays]


def to_arrays(payload: list[bytes]) -> list[np.ndarray]:
    """Byte strings as uint8 arrays (what Flower and checkpoints carry byte-exact)."""
    return [np.frombuffer(blob, dtype=np.uint8) for blob in payload]


def max_ciphertext_bytes(preset: Preset) -> int:
    """Upper bound on one serialised ciphertext: two uncompressed polynomials plus slack."""
    return 2 * preset.poly_modulus_degree * 8 * backend_for(preset).data_primes(preset) + 4096


def encrypt_update(
    ctx: Context,
    preset: Preset,
    weights: list[np.ndarray],
    coefficient: float,
    bound_to: str = "",
) -> list[bytes]:
    """Encrypt `coefficient * weights` as one payload (coefficient = n_k / R), its header
    saying what it was made for (`bound_to`, checked by `EncryptedSum.check`)."""
    if not 0 < coefficient < float("inf"):
        raise ValueError(f"coefficient={coefficient} is invalid: allowed a finite number > 0")
    layout = Layout.of(weights)
    flat = layout.flatten(weights)
    if not np.all(np.isfinite(flat)):
        raise ValueError("weights contain NaN or infinity; refusing to encrypt them")
    flat = np.append(flat, 1.0)  # the weight slot: it encrypts `coefficient` itself
    backend = backend_for(preset)
    encoding = backend.encoding(preset)
    encoding.check(weights)
    encoded = encoding.encode(flat, coefficient)
    chunks = [backend.encrypt(ctx, encoded[s : s + n]) for s, n in spans(layout, preset)]
    header = Header(
        preset.name, preset.scheme, fingerprint(ctx), layout, len(chunks), bound_to=bound_to
    )
    return [header.to_bytes(), *chunks]


# An aggregate's total weight sum(n_k) / R is about 1; below this it is not a real one.
MIN_TOTAL_WEIGHT = 1e-9
# How far the decrypted weight slot may differ from the header's total, relatively: the
# fixed-point rounding of every sender's n_k / R (2^-25 each under BFV) and CKKS' error.
WEIGHT_TOLERANCE = 1e-3


def decrypt_aggregate(ctx: Context, preset: Preset, payload: list[bytes]) -> list[np.ndarray]:
    """The weighted mean an aggregate payload encrypts (needs the secret context).

    Refuses an aggregate whose header or values cannot be genuine: a total weight that is
    not a finite number in [MIN_TOTAL_WEIGHT, the preset's max_total_weight] or that its
    weight slot does not carry, a ciphertext count other than the header's, or a mean
    beyond its encoding's `plausible_bound` (the sign of ciphertexts under another key
    behind a forged header).
    """
    if not payload:
        raise PayloadError("payload is empty")
    header = Header.from_bytes(payload[0])
    check_header(header, preset, fingerprint(ctx), header.layout)
    total = header.total_weight
    if total is None or not MIN_TOTAL_WEIGHT <= total <= preset.max_total_weight:
        raise PayloadError(
            f"aggregate total weight {total} is invalid: allowed a finite number in "
            f"[{MIN_TOTAL_WEIGHT}, {preset.max_total_weight}]"
        )
    if len(payload) - 1 != header.count:
        raise PayloadError(f"{len(payload) - 1} ciphertexts, the header announces {header.count}")
    backend = backend_for(preset)
    encoding = backend.encoding(preset)
    flat = np.zeros(header.layout.length + 1, dtype=np.float64)
    for (start, size), blob in zip(spans(header.layout, preset), payload[1:], strict=True):
        values = encoding.decode(np.asarray(backend.load(ctx, blob).decrypt()))
        flat[start : start + size] = values[:size]
    flat, carried = flat[:-1], float(flat[-1])  # the weight slot: the true total weight
    if not abs(carried - total) <= WEIGHT_TOLERANCE * max(total, abs(carried)):
        raise PayloadError(
            f"aggregate header claims total weight {total:.6g}, its ciphertexts carry "
            f"{carried:.6g}: the header (or checkpoint) was altered, or the ciphertexts are "
            "not this run's"
        )
    mean = flat / total
    largest = float(np.max(np.abs(mean), initial=0.0))
    bound = encoding.plausible_bound()
    if not largest <= 1.001 * bound:  # fixed-point slack; NaN fails too
        raise PayloadError(
            f"aggregate decrypts to |w| = {largest:.3g}, beyond the {bound:g} "
            "a genuine one can reach: encrypted under another key (forged header) or damaged"
        )
    return header.layout.unflatten(mean)


class EncryptedSum:
    """Adds client payloads one at a time under a public context; never decrypts."""

    def __init__(self, public_ctx: Context, preset: Preset, layout: Layout) -> None:
        if public_ctx.is_private():
            raise ValueError("EncryptedSum must be given the public context, not the secret one")
        self.ctx = public_ctx
        self.preset = preset
        self.layout = layout
        self.fingerprint = fingerprint(public_ctx)
        self._backend = backend_for(preset)
        self._spans = spans(layout, preset)
        self._max_bytes = max_ciphertext_bytes(preset)
        self._sums: list[Any] | None = None
        self.total_weight = 0.0
        self.count = 0

    def check(self, payload: list[bytes], bound_to: str | None = None) -> list[Any]:
        """Deserialise a client payload, or raise PayloadError saying what is wrong; with
        `bound_to`, the payload must have been made for it (not replayed from elsewhere)."""
        if not payload:
            raise PayloadError("payload is empty")
        header = Header.from_bytes(payload[0])
        check_header(header, self.preset, self.fingerprint, self.layout)
        if header.total_weight is not None:
            raise PayloadError("a client update must not carry a total weight")
        if bound_to is not None and header.bound_to != bound_to:
            raise PayloadError(
                f"made for {header.bound_to or 'no round'!r}, expected {bound_to!r}: "
                "a replayed or misdirected update"
            )
        if len(payload) - 1 != len(self._spans):
            raise PayloadError(f"{len(payload) - 1} ciphertexts, expected {len(self._spans)}")
        vectors = []
        for index, (blob, (_, size)) in enumerate(zip(payload[1:], self._spans, strict=True)):
            if not 0 < len(blob) <= self._max_bytes:
                raise PayloadError(
                    f"ciphertext {index} has {len(blob)} bytes, allowed 1..{self._max_bytes}"
                )
            try:
                vector = self._backend.load_upload(self.ctx, blob)
            except NotSeeded as err:
                raise PayloadError(f"ciphertext {index} refused: {err}") from err
            except Exception as err:  # TenSEAL raises bare ValueError/RuntimeError
                raise PayloadError(
                    f"ciphertext {index} does not deserialise: {type(err).__name__}"
                ) from err
            held = self._backend.size(vector)  # None: N slots always (seeded)
            if held is not None and held != size:
                raise PayloadError(f"ciphertext {index} holds {held} values, expected {size}")
            vectors.append(vector)
        return vectors

    def add(self, vectors: list[Any], weight: float) -> None:
        """Add one checked payload whose values were weighted by `weight` = n_k / R."""
        if self._sums is None:
            self._sums = vectors
        else:
            for total, vector in zip(self._sums, vectors, strict=True):
                total += vector
        self.total_weight += weight
        self.count += 1

    def total_weight_fits(self) -> bool:
        """Whether the sum's total weight is within what the encoding can hold (BFV's
        fixed point wraps beyond the preset's max_total_weight)."""
        return self._backend.encoding(self.preset).total_weight_fits(self.total_weight)

    def result(self) -> list[bytes]:
        """The aggregate payload: header with the total weight, then the summed ciphertexts."""
        if self._sums is None:
            raise ValueError("no payload was added")
        header = Header(
            self.preset.name,
            self.preset.scheme,
            self.fingerprint,
            self.layout,
            len(self._sums),
            total_weight=self.total_weight,
        )
        return [header.to_bytes(), *(v.serialize() for v in self._sums)]
