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

from fl_app.crypto._tenseal import ts
from fl_app.crypto.header import Header, PayloadError, check_header
from fl_app.crypto.keys import Context, fingerprint
from fl_app.crypto.packing import Layout, spans
from fl_app.crypto.presets import Preset
from fl_app.crypto.seal_form import NotSeeded
from fl_app.crypto.seeded import SeededContext


def to_payload(arrays: list[np.ndarray]) -> list[bytes]:
    """The byte strings a list of uint8 arrays carries."""
    return [np.asarray(a, dtype=np.uint8).tobytes() for a in arrays]


def to_arrays(payload: list[bytes]) -> list[np.ndarray]:
    """Byte strings as uint8 arrays (what Flower and checkpoints carry byte-exact)."""
    return [np.frombuffer(blob, dtype=np.uint8) for blob in payload]


def max_ciphertext_bytes(preset: Preset) -> int:
    """Upper bound on one serialised ciphertext: two uncompressed polynomials plus slack."""
    return 2 * preset.poly_modulus_degree * 8 * preset.data_primes + 4096


def _encrypt(ctx: Context, preset: Preset, values: np.ndarray) -> bytes:
    if isinstance(ctx, SeededContext):
        return ctx.encrypt(values)
    if preset.scheme == "bfv":
        return ts.bfv_vector(ctx, values.tolist()).serialize()
    return ts.ckks_vector(ctx, values.tolist()).serialize()


def _load_vector(ctx: Context, preset: Preset, blob: bytes):
    """A ciphertext to add or decrypt: `+=`, `.serialize()`, `.decrypt()`."""
    if isinstance(ctx, SeededContext):
        return ctx.load(blob)
    if preset.scheme == "bfv":
        return ts.bfv_vector_from(ctx, blob)
    return ts.ckks_vector_from(ctx, blob)


def _load_upload(ctx: Context, preset: Preset, blob: bytes):
    """A client's ciphertext; under the seeded preset only the seeded form, which only a
    holder of the secret key can make (public-key presets: anyone with the public key
    can encrypt, and node authentication decides who may send)."""
    if isinstance(ctx, SeededContext):
        return ctx.load_upload(blob)
    return _load_vector(ctx, preset, blob)


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
    if preset.scheme == "bfv":
        _check_bound(weights, preset)
        encoded = np.rint(flat * coefficient * 2.0**preset.scale_bits).astype(np.int64)
    else:
        encoded = flat * coefficient
    chunks = [_encrypt(ctx, preset, encoded[s : s + n]) for s, n in spans(layout, preset)]
    header = Header(
        preset.name, preset.scheme, fingerprint(ctx), layout, len(chunks), bound_to=bound_to
    )
    return [header.to_bytes(), *chunks]


class WeightBoundError(ValueError):
    """A weight is beyond what the preset's fixed-point encoding can sum."""

    def __init__(self, index: int, largest: float, preset: Preset) -> None:
        self.index, self.largest, self.bound = index, largest, preset.max_abs_weight
        super().__init__(
            f"weight array {index} has |w| = {largest:.3g}: exceeds the {preset.name!r} "
            f"preset's limit {preset.max_abs_weight} (|w| <= {preset.max_abs_weight}); "
            "the fixed-point sum could overflow"
        )


def _check_bound(weights: list[np.ndarray], preset: Preset) -> None:
    for index, array in enumerate(weights):
        largest = float(np.max(np.abs(array), initial=0.0))
        if largest > preset.max_abs_weight:
            raise WeightBoundError(index, largest, preset)


# An aggregate's total weight sum(n_k) / R is about 1; below this it is not a real one.
MIN_TOTAL_WEIGHT = 1e-9
# How far the decrypted weight slot may differ from the header's total, relatively: the
# fixed-point rounding of every sender's n_k / R (2^-25 each under BFV) and CKKS' error.
WEIGHT_TOLERANCE = 1e-3


def plausible_bound(preset: Preset) -> float:
    """The largest |w| a genuine aggregate can decrypt to: BFV's encoding limit, or for
    CKKS what the first prime holds above the scale."""
    if preset.scheme == "bfv":
        return preset.max_abs_weight
    return 2.0 ** (preset.coeff_mod_bit_sizes[0] - preset.scale_bits - 1)


def decrypt_aggregate(ctx: Context, preset: Preset, payload: list[bytes]) -> list[np.ndarray]:
    """The weighted mean an aggregate payload encrypts (needs the secret context).

    Refuses an aggregate whose header or values cannot be genuine: a total weight that is
    not a finite number in [MIN_TOTAL_WEIGHT, the preset's max_total_weight] or that its
    weight slot does not carry, a ciphertext count other than the header's, or a mean
    beyond `plausible_bound` (the sign of ciphertexts under another key behind a forged
    header).
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
    flat = np.zeros(header.layout.length + 1, dtype=np.float64)
    for (start, size), blob in zip(spans(header.layout, preset), payload[1:], strict=True):
        values = np.asarray(_load_vector(ctx, preset, blob).decrypt(), dtype=np.float64)
        flat[start : start + size] = values[:size]
    if preset.scheme == "bfv":
        flat /= 2.0**preset.scale_bits
    flat, carried = flat[:-1], float(flat[-1])  # the weight slot: the true total weight
    if not abs(carried - total) <= WEIGHT_TOLERANCE * max(total, abs(carried)):
        raise PayloadError(
            f"aggregate header claims total weight {total:.6g}, its ciphertexts carry "
            f"{carried:.6g}: the header (or checkpoint) was altered, or the ciphertexts are "
            "not this run's"
        )
    mean = flat / total
    largest = float(np.max(np.abs(mean), initial=0.0))
    if not largest <= 1.001 * plausible_bound(preset):  # fixed-point slack; NaN fails too
        raise PayloadError(
            f"aggregate decrypts to |w| = {largest:.3g}, beyond the {plausible_bound(preset):g} "
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
                vector = _load_upload(self.ctx, self.preset, blob)
            except NotSeeded as err:
                raise PayloadError(f"ciphertext {index} refused: {err}") from err
            except Exception as err:  # TenSEAL raises bare ValueError/RuntimeError
                raise PayloadError(
                    f"ciphertext {index} does not deserialise: {type(err).__name__}"
                ) from err
            if not self.preset.seeded and vector.size() != size:  # seeded: N slots always
                raise PayloadError(
                    f"ciphertext {index} holds {vector.size()} values, expected {size}"
                )
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
