"""HE backends: one object per scheme family, the only place that knows which library
(TenSEAL vectors, or SEAL's own API for the seeded preset) makes a ciphertext, and how
model weights become slot values (fixed point under BFV, floats under CKKS).

Everything above this module (keys, payloads, the HE privacy mode) asks `backend_for(
preset)` or `backend_of(context)` and never branches on the scheme.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from fl_app.crypto._tenseal import sealapi, ts
from fl_app.crypto.memfile import save_bytes
from fl_app.crypto.presets import Preset
from fl_app.crypto.seeded import MAGIC, SeededContext, describe

Context = Any  # a TenSEAL context or a SeededContext
Vector = Any  # a loaded ciphertext: `+=`, `.serialize()`, `.decrypt()`


class WeightBoundError(ValueError):
    """A weight is beyond what the preset's fixed-point encoding can sum."""

    def __init__(self, index: int, largest: float, preset: Preset) -> None:
        self.index, self.largest, self.bound = index, largest, preset.max_abs_weight
        super().__init__(
            f"weight array {index} has |w| = {largest:.3g}: exceeds the {preset.name!r} "
            f"preset's limit {preset.max_abs_weight} (|w| <= {preset.max_abs_weight}); "
            "the fixed-point sum could overflow"
        )


class Encoding(Protocol):
    """How a client's weighted values become slot values, and a decrypted sum floats."""

    def encode(self, flat: np.ndarray, coefficient: float) -> np.ndarray: ...
    def decode(self, values: np.ndarray) -> np.ndarray: ...
    def check(self, weights: list[np.ndarray]) -> None: ...
    def plausible_bound(self) -> float: ...
    def tolerance(self, num_clients: int) -> float: ...
    def total_weight_fits(self, total_weight: float) -> bool: ...


@dataclass(frozen=True)
class FixedPoint:
    """BFV: integers round(x * 2^scale_bits) mod t; sums are exact."""

    preset: Preset

    def encode(self, flat: np.ndarray, coefficient: float) -> np.ndarray:
        return np.rint(flat * coefficient * 2.0**self.preset.scale_bits).astype(np.int64)

    def decode(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64) / 2.0**self.preset.scale_bits

    def check(self, weights: list[np.ndarray]) -> None:
        for index, array in enumerate(weights):
            largest = float(np.max(np.abs(array), initial=0.0))
            if largest > self.preset.max_abs_weight:
                raise WeightBoundError(index, largest, self.preset)

    def plausible_bound(self) -> float:
        return self.preset.max_abs_weight

    def tolerance(self, num_clients: int) -> float:
        return num_clients * 0.5 / 2**self.preset.scale_bits

    def total_weight_fits(self, total_weight: float) -> bool:
        return total_weight <= self.preset.max_total_weight


@dataclass(frozen=True)
class Floats:
    """CKKS: approximate floats at scale 2^scale_bits."""

    preset: Preset

    def encode(self, flat: np.ndarray, coefficient: float) -> np.ndarray:
        return flat * coefficient

    def decode(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64)

    def check(self, weights: list[np.ndarray]) -> None:
        return None  # CKKS holds any float its first prime can (plausible_bound)

    def plausible_bound(self) -> float:
        """What the first prime holds above the scale."""
        return 2.0 ** (self.preset.coeff_mod_bit_sizes[0] - self.preset.scale_bits - 1)

    def tolerance(self, num_clients: int) -> float:
        return num_clients * 2.0**-20  # CKKS noise, far above its ~2^-30 typical error

    def total_weight_fits(self, total_weight: float) -> bool:
        return math.isfinite(total_weight)


class Backend(Protocol):
    """One scheme family: keys, encryption, loading and parameters of its contexts."""

    def build(self, preset: Preset) -> Context: ...
    def to_bytes(self, ctx: Context, *, secret: bool) -> bytes: ...
    def public_key_bytes(self, ctx: Context) -> bytes: ...
    def parameters(self, ctx: Context) -> str: ...
    def slots(self, preset: Preset) -> int: ...
    def data_primes(self, preset: Preset) -> int: ...
    def encoding(self, preset: Preset) -> Encoding: ...
    def encrypt(self, ctx: Context, values: np.ndarray) -> bytes: ...
    def load(self, ctx: Context, blob: bytes) -> Vector: ...
    def load_upload(self, ctx: Context, blob: bytes) -> Vector: ...
    def size(self, vector: Vector) -> int | None: ...


class TenSEALBackend:
    """TenSEAL's BFV or CKKS vectors, public-key encryption (presets compact, nvflare)."""

    def __init__(self, scheme: str) -> None:
        self.scheme = scheme

    def build(self, preset: Preset) -> Context:
        sizes = list(preset.coeff_mod_bit_sizes)
        n = preset.poly_modulus_degree
        if self.scheme == "bfv":
            t = sealapi.PlainModulus.Batching(n, preset.plain_modulus_bits).value()
            return ts.context(
                ts.SCHEME_TYPE.BFV, poly_modulus_degree=n, plain_modulus=t,
                coeff_mod_bit_sizes=sizes,
            )  # fmt: skip
        ctx = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=n, coeff_mod_bit_sizes=sizes)
        ctx.global_scale = 2.0**preset.scale_bits
        return ctx

    def to_bytes(self, ctx: Context, *, secret: bool) -> bytes:
        if secret:
            return ctx.serialize(save_secret_key=True)
        # sums need no Galois or relinearisation keys
        return ctx.serialize(
            save_public_key=True, save_secret_key=False, save_galois_keys=False,
            save_relin_keys=False,
        )  # fmt: skip

    def public_key_bytes(self, ctx: Context) -> bytes:
        return save_bytes(ctx.public_key().data.save)

    def parameters(self, ctx: Context) -> str:
        return describe(ctx.seal_context().data.key_context_data().parms())

    def slots(self, preset: Preset) -> int:
        return preset.poly_modulus_degree // (1 if self.scheme == "bfv" else 2)

    def data_primes(self, preset: Preset) -> int:
        return len(preset.coeff_mod_bit_sizes) - 1  # the last one is the special prime

    def encoding(self, preset: Preset) -> Encoding:
        return FixedPoint(preset) if self.scheme == "bfv" else Floats(preset)

    def encrypt(self, ctx: Context, values: np.ndarray) -> bytes:
        make = ts.bfv_vector if self.scheme == "bfv" else ts.ckks_vector
        return make(ctx, values.tolist()).serialize()

    def load(self, ctx: Context, blob: bytes) -> Vector:
        read = ts.bfv_vector_from if self.scheme == "bfv" else ts.ckks_vector_from
        return read(ctx, blob)

    def load_upload(self, ctx: Context, blob: bytes) -> Vector:
        # anyone with the public key can encrypt: node authentication decides who sends
        return self.load(ctx, blob)

    def size(self, vector: Vector) -> int | None:
        return vector.size()


class SeededBackend:
    """Seeded symmetric-key BFV through SEAL's API (fl_app.crypto.seeded; preset seeded)."""

    def build(self, preset: Preset) -> Context:
        return SeededContext.build(preset)

    def to_bytes(self, ctx: Context, *, secret: bool) -> bytes:
        return ctx.to_bytes(secret=secret)

    def public_key_bytes(self, ctx: Context) -> bytes:
        return ctx.public_key_bytes()

    def parameters(self, ctx: Context) -> str:
        return describe(ctx.parms)

    def slots(self, preset: Preset) -> int:
        return preset.poly_modulus_degree

    def data_primes(self, preset: Preset) -> int:
        return len(preset.coeff_mod_bit_sizes)  # no special prime: nothing switches keys

    def encoding(self, preset: Preset) -> Encoding:
        return FixedPoint(preset)

    def encrypt(self, ctx: Context, values: np.ndarray) -> bytes:
        return ctx.encrypt(values)

    def load(self, ctx: Context, blob: bytes) -> Vector:
        return ctx.load(blob)

    def load_upload(self, ctx: Context, blob: bytes) -> Vector:
        # only the seeded form, which only a holder of the secret key can make
        return ctx.load_upload(blob)

    def size(self, vector: Vector) -> int | None:
        return None  # N slots always: the layout's spans say which hold values


BACKENDS: dict[str, Backend] = {
    "tenseal_bfv": TenSEALBackend("bfv"),
    "tenseal_ckks": TenSEALBackend("ckks"),
    "seeded_bfv": SeededBackend(),
}


def backend_for(preset: Preset) -> Backend:
    """The backend that makes `preset`'s ciphertexts."""
    return BACKENDS[preset.backend]


def backend_of(ctx: Context) -> Backend:
    """The backend a loaded context belongs to (its keys and parameters)."""
    return BACKENDS["seeded_bfv" if isinstance(ctx, SeededContext) else "tenseal_bfv"]


def context_from(data: bytes) -> Context:
    """A context from the bytes a backend's `to_bytes` wrote."""
    if data.startswith(MAGIC):
        return SeededContext.from_bytes(data)
    return ts.context_from(data)


def tolerance(preset: Preset, num_clients: int) -> float:
    """Worst-case absolute error of a decrypted weighted mean of `num_clients`."""
    return backend_for(preset).encoding(preset).tolerance(num_clients)
