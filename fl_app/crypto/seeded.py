"""Seeded symmetric-key BFV through SEAL's own API (`tenseal.sealapi`).

A ciphertext made with the secret key, (c0, c1) = (Δm - (a·s + e), a), has a uniformly
random second polynomial a, which SEAL serialises as the seed of the generator that
drew it: half the bytes of a public-key ciphertext. Clients hold the secret key (the
threat model), so they may encrypt this way. The server only loads and adds, for which
SEAL needs the encryption parameters and no key. A sum is not seeded any more: the
aggregate the server returns is a full ciphertext.

These contexts have one coefficient prime. The seed exists only at the level a
ciphertext is made at, and without a special prime nothing can switch it; SEAL then
offers no key switching, which adding never needs. TenSEAL's own context insists on
relinearisation keys, so this module keeps its keys in its own small file format:
a magic line, a JSON line of part sizes, then SEAL's serialised parameters, public key
(its hash is the fingerprint) and, in a secret file only, secret key.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from fl_app.crypto._tenseal import sealapi
from fl_app.crypto.memfile import load_bytes, save_bytes
from fl_app.crypto.presets import Preset
from fl_app.crypto.seal_form import require_seeded

MAGIC = b"fl_app seeded-bfv 1\n"
_PARTS = ("parms", "public_key", "secret_key")


class SeededContext:
    """SEAL parameters, the public key and, on clients only, the secret key."""

    def __init__(self, parms: Any, public_key: Any, secret_key: Any = None) -> None:
        self.parms = parms
        self.context = _seal_context(parms)
        self.public_key = public_key
        self.secret_key = secret_key
        self._evaluator = sealapi.Evaluator(self.context)
        self._encoder = sealapi.BatchEncoder(self.context)
        if secret_key is not None:
            self._encryptor = sealapi.Encryptor(self.context, secret_key)
            self._decryptor = sealapi.Decryptor(self.context, secret_key)

    @classmethod
    def build(cls, preset: Preset) -> SeededContext:
        """Fresh keys for `preset` (BFV, one coefficient prime, batching)."""
        if preset.scheme != "bfv" or len(preset.coeff_mod_bit_sizes) != 1:
            raise ValueError(f"preset {preset.name!r}: seeded needs BFV with one prime")
        n = preset.poly_modulus_degree
        parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.BFV)
        parms.set_poly_modulus_degree(n)
        parms.set_coeff_modulus(sealapi.CoeffModulus.Create(n, list(preset.coeff_mod_bit_sizes)))
        parms.set_plain_modulus(sealapi.PlainModulus.Batching(n, preset.plain_modulus_bits))
        generator = sealapi.KeyGenerator(_seal_context(parms))
        public_key = sealapi.PublicKey()
        generator.create_public_key(public_key)
        return cls(parms, public_key, generator.secret_key())

    def is_private(self) -> bool:
        return self.secret_key is not None

    def to_bytes(self, *, secret: bool) -> bytes:
        """The key file: with `secret`, the secret key too (write it 0600)."""
        if secret and self.secret_key is None:
            raise ValueError("this context holds no secret key")
        objects = [self.parms, self.public_key] + ([self.secret_key] if secret else [])
        blobs = [save_bytes(obj.save) for obj in objects]
        sizes = json.dumps(dict(zip(_PARTS, map(len, blobs), strict=False))).encode()
        return b"".join([MAGIC, sizes, b"\n", *blobs])

    @classmethod
    def from_bytes(cls, data: bytes) -> SeededContext:
        """Read a key file written by `to_bytes`; ValueError if it is not one."""
        if not data.startswith(MAGIC):
            raise ValueError("not a seeded-BFV key file")
        line, _, rest = data[len(MAGIC) :].partition(b"\n")
        sizes = json.loads(line)
        if not (
            isinstance(sizes, dict)
            and set(_PARTS[:2]) <= set(sizes) <= set(_PARTS)
            and all(isinstance(size, int) and size > 0 for size in sizes.values())
        ):
            raise ValueError("key file parts are not valid")
        if sum(sizes.values()) != len(rest):
            raise ValueError("key file is truncated or has extra bytes")
        blobs, offset = {}, 0
        for part in _PARTS:
            if part in sizes:
                blobs[part], offset = rest[offset : offset + sizes[part]], offset + sizes[part]
        parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.BFV)
        load_bytes(blobs["parms"], parms.load)
        context = _seal_context(parms)
        keys = [sealapi.PublicKey(), sealapi.SecretKey() if "secret_key" in blobs else None]
        for key, part in zip(keys, _PARTS[1:], strict=True):
            if key is not None:
                load_bytes(blobs[part], lambda path, key=key: key.load(context, path))
        return cls(parms, *keys)

    def public_key_bytes(self) -> bytes:
        return save_bytes(self.public_key.save)

    # -- ciphertexts ---------------------------------------------------------------

    def encrypt(self, values: np.ndarray) -> bytes:
        """A seeded ciphertext of up to N integers (|v| < t/2), serialised."""
        if self.secret_key is None:
            raise ValueError("seeded encryption needs the secret context")
        plaintext = sealapi.Plaintext()
        self._encoder.encode(np.asarray(values, dtype=np.int64).tolist(), plaintext)
        return save_bytes(self._encryptor.encrypt_symmetric(plaintext).save)

    def load(self, blob: bytes) -> SeededCiphertext:
        """A ciphertext of these parameters, or ValueError: SEAL checks that it belongs
        to them (ring, modulus, coefficient ranges); here, that it is a fresh two-part
        ciphertext at the one level, as every encryption and sum is."""
        ciphertext = sealapi.Ciphertext()
        load_bytes(blob, lambda path: ciphertext.load(self.context, path))
        if ciphertext.size() != 2 or ciphertext.is_ntt_form():
            raise ValueError(f"a {ciphertext.size()}-part ciphertext, expected 2 parts")
        if ciphertext.parms_id() != self.context.first_parms_id():
            raise ValueError("ciphertext is at another level than the parameters' one")
        return SeededCiphertext(self, ciphertext)

    def load_upload(self, blob: bytes) -> SeededCiphertext:
        """A client's upload: only a seeded ciphertext (NotSeeded otherwise, read from
        its bytes before SEAL loads it), which nobody can make without the secret key."""
        require_seeded(
            blob,
            poly_modulus_degree=self.parms.poly_modulus_degree(),
            coeff_count=len(self.parms.coeff_modulus()),
        )
        return self.load(blob)

    def decrypt(self, ciphertext: SeededCiphertext) -> np.ndarray:
        """The N slot values as signed integers (needs the secret key)."""
        if self.secret_key is None:
            raise ValueError("decryption needs the secret context")
        plaintext = sealapi.Plaintext()
        self._decryptor.decrypt(ciphertext.data, plaintext)
        return np.asarray(self._encoder.decode_int64(plaintext), dtype=np.int64)

    def noise_budget(self, ciphertext: SeededCiphertext) -> int:
        """Bits of noise budget left (needs the secret key): 0 means undecryptable."""
        return self._decryptor.invariant_noise_budget(ciphertext.data)

    def add_inplace(self, total: SeededCiphertext, other: SeededCiphertext) -> None:
        self._evaluator.add_inplace(total.data, other.data)


class SeededCiphertext:
    """One loaded ciphertext with the interface of TenSEAL's vectors that fl_app uses:
    `+=`, `serialize()`, `decrypt()`."""

    def __init__(self, owner: SeededContext, data: Any) -> None:
        self.owner, self.data = owner, data

    def __iadd__(self, other: SeededCiphertext) -> SeededCiphertext:
        self.owner.add_inplace(self, other)
        return self

    def serialize(self) -> bytes:
        return save_bytes(self.data.save)

    def decrypt(self) -> np.ndarray:
        return self.owner.decrypt(self)


def describe(parms: Any) -> str:
    """SEAL encryption parameters as one comparable line (see keys.parameters_of)."""
    scheme = parms.scheme().name.lower()
    bits = tuple(modulus.bit_count() for modulus in parms.coeff_modulus())
    line = f"{scheme.upper()} N={parms.poly_modulus_degree()} q bits={bits}"
    if scheme == "bfv":
        line += f" t bits={parms.plain_modulus().bit_count()}"
    return line


def _seal_context(parms: Any) -> Any:
    context = sealapi.SEALContext(parms, True, sealapi.SEC_LEVEL_TYPE.TC128)
    if not context.parameters_set():
        raise ValueError(f"SEAL refuses the parameters: {context.parameters_error_message()}")
    return context
