"""The seeded preset with real SEAL ciphertexts: sizes, exact sums, the noise budget after
1,000 additions, hostile ciphertexts and key files, and a server that holds no secret."""

from __future__ import annotations

import numpy as np
import pytest

from fl_app.crypto import memfile
from fl_app.crypto._tenseal import sealapi
from fl_app.crypto.keys import HEKeyError, build_context, context_from, public_bytes, secret_bytes
from fl_app.crypto.keys import load_public_context as load_public
from fl_app.crypto.packing import Layout
from fl_app.crypto.payload import EncryptedSum, PayloadError, decrypt_aggregate, encrypt_update
from fl_app.crypto.presets import get_preset
from fl_app.crypto.seeded import SeededContext

PRESET = get_preset("seeded")


@pytest.fixture(scope="module")
def seeded():
    secret = build_context(PRESET)
    return secret, context_from(public_bytes(secret))


def upload_ratio(secret, num_params: int) -> float:
    payload = encrypt_update(secret, PRESET, [np.zeros(num_params, np.float32)], 1.0)
    return sum(len(part) for part in payload) / (4 * num_params)


def test_upload_is_at_most_twice_float32_and_small_models_pay_little(seeded):
    secret, _ = seeded
    assert upload_ratio(secret, 100_000) <= 2.0
    assert upload_ratio(secret, 5_000) <= 2.5


def test_a_seeded_ciphertext_is_half_a_public_key_one(seeded):
    secret, _ = seeded
    plaintext = sealapi.Plaintext()
    sealapi.BatchEncoder(secret.context).encode(list(range(100)), plaintext)
    public_one = sealapi.Ciphertext()
    sealapi.Encryptor(secret.context, secret.public_key).encrypt(plaintext, public_one)
    unseeded = len(memfile.save_bytes(public_one.save))
    assert len(secret.encrypt(np.arange(100))) < 0.55 * unseeded


def test_sums_are_exact_and_noise_budget_survives_1000_additions(seeded):
    secret, public = seeded
    n, t = PRESET.poly_modulus_degree, secret.parms.plain_modulus().value()
    # 1,000 updates at the largest magnitude the encoding allows: |sum| = 64 x 2 x 2^24,
    # plus half a unit of rounding each; slots hold signed values below t/2.
    largest = int(PRESET.max_abs_weight * PRESET.max_total_weight * 2**PRESET.scale_bits)
    assert largest + 500 < t // 2
    values = np.full(n, largest // 1000, np.int64)
    values[::2] *= -1
    blob = secret.encrypt(values)
    total = public.load(blob)
    for _ in range(999):
        total += public.load(blob)
    summed = secret.load(total.serialize())
    budget = secret.noise_budget(summed)
    print(f"seeded noise budget: {secret.noise_budget(secret.load(blob))} bits fresh, "
          f"{budget} after 1,000 additions")  # fmt: skip
    assert budget >= 4
    np.testing.assert_array_equal(summed.decrypt(), values * 1000)


def test_the_server_context_holds_no_secret(seeded):
    secret, public = seeded
    assert public.secret_key is None and not public.is_private()
    key_blob = memfile.save_bytes(secret.secret_key.save)
    assert key_blob not in public_bytes(secret)
    assert key_blob in secret_bytes(secret)
    with pytest.raises(ValueError, match="secret context"):
        public.encrypt(np.zeros(3))
    with pytest.raises(ValueError, match="secret context"):
        public.load(secret.encrypt(np.zeros(3))).decrypt()
    with pytest.raises(ValueError, match="EncryptedSum must be given the public context"):
        EncryptedSum(secret, PRESET, Layout.of([np.zeros(3)]))


def checker(public, size=3000):
    return EncryptedSum(public, PRESET, Layout.of([np.zeros(size, np.float32)]))


def payload_of(secret, size=3000, bound_to=""):
    return encrypt_update(secret, PRESET, [np.full(size, 0.5, np.float32)], 0.5, bound_to)


def test_a_three_part_ciphertext_is_refused(seeded):
    secret, public = seeded
    good = payload_of(secret)
    product = secret.load(good[1]).data
    sealapi.Evaluator(secret.context).multiply_inplace(product, secret.load(good[1]).data)
    blob = memfile.save_bytes(product.save)
    with pytest.raises(ValueError, match="3-part ciphertext, expected 2"):
        public.load(blob)
    with pytest.raises(PayloadError, match="bytes, allowed"):  # larger than any real one
        checker(public).check([good[0], blob, good[2]])


@pytest.mark.parametrize(
    ("n", "bits", "plain_bits"), [(4096, (56,), 33), (2048, (50,), 33)], ids=["wrong-N", "wrong-q"]
)
def test_ciphertexts_of_other_parameters_are_refused(seeded, n, bits, plain_bits):
    secret, public = seeded
    other = dict(poly_modulus_degree=n, coeff_mod_bit_sizes=bits, plain_modulus_bits=plain_bits)
    stranger = SeededContext.build(PRESET.__class__(**{**PRESET.__dict__, **other}))
    good = payload_of(secret)
    with pytest.raises(PayloadError, match=r"does not deserialise|expected 2 parts, N=2048"):
        checker(public).check([good[0], stranger.encrypt(np.zeros(5)), good[2]])


def test_a_forged_header_over_another_keys_ciphertexts_is_refused_at_decryption(seeded):
    secret, public = seeded
    stranger = build_context(PRESET)
    forged = [payload_of(secret)[0], *payload_of(stranger)[1:]]
    total = checker(public)
    total.add(total.check(forged), 0.5)  # the server cannot tell; the clients can
    with pytest.raises(PayloadError, match=r"under another key|its ciphertexts carry"):
        decrypt_aggregate(secret, PRESET, total.result())


@pytest.mark.parametrize(
    "damage",
    [lambda b: b[:-100], lambda b: b[:40] + b[60:], lambda b: b + b"x", lambda b: b"x" + b],
    ids=["truncated", "cut-in-header", "extra-bytes", "no-magic"],
)
def test_damaged_key_files_are_refused(seeded, tmp_path, damage):
    _, public = seeded
    path = tmp_path / "public.ctx"
    path.write_bytes(damage(public.to_bytes(secret=False)))
    with pytest.raises(HEKeyError, match="not an HE context"):
        load_public(path)


def test_without_memfd_the_scratch_file_is_private_and_removed(seeded, tmp_path, monkeypatch):
    secret, public = seeded
    monkeypatch.setattr(memfile, "_HAS_MEMFD", False)
    monkeypatch.setattr(memfile.tempfile, "tempdir", str(tmp_path))
    blob = secret.encrypt(np.arange(10))
    assert public.load(blob).serialize()
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- only seeded uploads


def reencoded(blob: bytes, mode: int) -> bytes:
    """The same SEAL object with its members stored under compression `mode`."""
    import struct
    import zlib

    import zstandard

    magic, size, major, minor, _, reserved, _ = struct.unpack_from("<HBBBBHQ", blob)
    members = zstandard.ZstdDecompressor().stream_reader(blob[16:]).read()
    body = {0: members, 1: zlib.compress(members), 2: zstandard.compress(members)}[mode]
    header = struct.pack("<HBBBBHQ", magic, size, major, minor, mode, reserved, 16 + len(body))
    return header + body


def test_an_upload_made_with_the_public_key_alone_is_refused(seeded):
    """Issue 22: the public context is enough to encrypt values of one's choice. Under the
    seeded preset honest uploads are seeded ciphertexts, which need the secret key; the
    full form is refused from its bytes."""
    secret, public = seeded
    chosen = np.full(PRESET.poly_modulus_degree, 3 << PRESET.scale_bits, dtype=np.int64)
    plaintext = sealapi.Plaintext()
    sealapi.BatchEncoder(public.context).encode(chosen.tolist(), plaintext)
    forged = sealapi.Ciphertext()
    sealapi.Encryptor(public.context, public.public_key).encrypt(plaintext, forged)
    blob = memfile.save_bytes(forged.save)
    # What the attack does without the check: it decrypts to the attacker's values.
    np.testing.assert_array_equal(secret.decrypt(secret.load(blob)), chosen)
    good = payload_of(secret)
    with pytest.raises(PayloadError, match="ciphertext 0 refused: a full ciphertext, not a seeded"):
        checker(public).check([good[0], blob, good[2]])
    total = secret.load(good[1])
    total += secret.load(good[1])  # a sum is full too: a client cannot send one either
    with pytest.raises(PayloadError, match="a full ciphertext"):
        checker(public).check([good[0], total.serialize(), good[2]])


@pytest.mark.parametrize("mode", [0, 1, 2], ids=["none", "zlib", "zstd"])
def test_a_seeded_upload_passes_under_every_compression_seal_writes(seeded, mode):
    secret, public = seeded
    good = payload_of(secret)
    vectors = checker(public).check([good[0], reencoded(good[1], mode), good[2]])
    assert len(vectors) == 2


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b + b"\0", "bytes after its end"),
        (lambda b: b[:-1], "header claims"),
        (lambda b: b[:2] + b"\x20" + b[3:], "not a SEAL object"),
        (lambda b: b[:5] + b"\x07" + b[6:], "compression mode 7"),
        (lambda b: b[:16] + b"\0" * (len(b) - 16), "does not decompress"),
    ],
    ids=["trailing", "truncated", "header-size", "compression", "garbage-body"],
)
def test_malformed_seeded_uploads_are_refused_with_the_reason(seeded, mutate, reason):
    secret, public = seeded
    good = payload_of(secret)
    with pytest.raises(PayloadError, match=reason):
        checker(public).check([good[0], mutate(good[1]), good[2]])


def test_a_decompression_bomb_is_refused_without_being_inflated(seeded):
    import struct

    import zstandard

    secret, public = seeded
    good = payload_of(secret)
    bomb = zstandard.compress(b"\0" * (64 << 20))  # 64 MB of zeros in a few kB
    header = struct.pack("<HBBBBHQ", 0xA15E, 16, 4, 1, 2, 0, 16 + len(bomb))
    with pytest.raises(PayloadError, match="decompresses to more than"):
        checker(public).check([good[0], header + bomb, good[2]])
