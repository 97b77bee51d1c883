"""Named HE parameter sets, each checked against the HE-standard 128-bit security table."""

from __future__ import annotations

from dataclasses import dataclass

# Largest total coefficient modulus (bits) for 128-bit classical security with a
# ternary secret, by ring dimension (HomomorphicEncryption.org standard, table 1).
MAX_MODULUS_BITS_128 = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}


@dataclass(frozen=True)
class Preset:
    """One HE parameter set and how model updates are laid out in it."""

    name: str
    scheme: str  # "bfv" (fixed point, exact sums) | "ckks" (approximate floats), in headers
    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int  # BFV: fixed-point scale 2^bits; CKKS: global scale 2^bits
    plain_modulus_bits: int = 0  # BFV only: bits of the batching plain modulus
    packing: str = "dense"  # "dense": all layers back to back | "per_layer"
    max_abs_weight: float = 64.0  # BFV: largest |weight| a client may encrypt
    max_total_weight: float = 30.0  # BFV: largest sum of client coefficients n_k / R
    # which library makes its ciphertexts (fl_app/crypto/backends.py): tenseal_bfv |
    # tenseal_ckks | seeded_bfv (clients encrypt with the secret key, c1 sent as a seed)
    backend: str = "tenseal_bfv"

    @property
    def total_modulus_bits(self) -> int:
        return sum(self.coeff_mod_bit_sizes)

    def check_security(self) -> None:
        """Raise unless the parameters give >= 128-bit security."""
        limit = MAX_MODULUS_BITS_128.get(self.poly_modulus_degree)
        if limit is None or self.total_modulus_bits > limit:
            raise ValueError(
                f"preset {self.name!r}: N={self.poly_modulus_degree} with "
                f"{self.total_modulus_bits} modulus bits is below 128-bit security "
                f"(allowed at most {limit} bits for this N)"
            )


PRESETS = {
    # The default. Clients encrypt with the secret key they already hold, and SEAL sends
    # the ciphertext's random half as a seed (fl_app/crypto/seeded.py): 15.6 KB per
    # 2,048 values = 1.90x float32. N=2048 with one 54-bit prime is the HE standard's
    # 128-bit limit; a larger N costs the same bytes per value and wastes more of the
    # last ciphertext of a small model. Fixed point at 2^24 as in `compact`; slots hold
    # signed values below t/2 ~ 2^32, about twice |sum| <= 64 x 2 x 2^24 = 2^31: the
    # total weight is at most 1 (updates must carry the example count their client
    # announced for R), 2 leaves margin. Noise budget: 16 bits fresh; after 1,000
    # additions 11 (independent encryptions) or 6 (worst case: one ciphertext added to
    # itself, so the noise grows linearly), measured in tests/crypto/test_seeded.py.
    "seeded": Preset(
        "seeded", "bfv", poly_modulus_degree=2048, coeff_mod_bit_sizes=(54,), scale_bits=24,
        plain_modulus_bits=33, max_total_weight=2.0, backend="seeded_bfv",
    ),
    # Add-only aggregation: BFV batching puts one value in each of N slots, and a
    # single 56-bit ciphertext prime (53-bit special prime for the key) keeps the
    # ciphertext at ~15 bytes per value. Values are fixed point at 2^24; the 36-bit
    # plain modulus holds sums up to ~2^11 = max_abs_weight (64) x max_total_weight
    # (30) with margin, and leaves noise budget for 1,000 additions (measured).
    "compact": Preset(
        "compact", "bfv", poly_modulus_degree=4096, coeff_mod_bit_sizes=(56, 53), scale_bits=24,
        plain_modulus_bits=36,
    ),
    # NVIDIA FLARE's TenSEAL parameters, kept for comparison: CKKS, N=8192,
    # moduli [60, 40, 40], scale 2^40, one ciphertext (group) per layer.
    "nvflare": Preset(
        "nvflare", "ckks", poly_modulus_degree=8192, coeff_mod_bit_sizes=(60, 40, 40),
        scale_bits=40, packing="per_layer", backend="tenseal_ckks",
    ),
}  # fmt: skip


def get_preset(name: str) -> Preset:
    """The preset called `name`, checked for 128-bit security."""
    if name not in PRESETS:
        raise ValueError(f"he preset {name!r} is unknown: allowed {sorted(PRESETS)}")
    preset = PRESETS[name]
    preset.check_security()
    return preset
