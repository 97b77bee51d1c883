"""What a serialised SEAL ciphertext is, read from its bytes before SEAL loads it.

SEAL writes a 16-byte `SEALHeader` (magic 0xA15E, header size, version, compression
mode, total size), then the compressed members of the ciphertext: parms_id (4 × u64),
NTT flag (1 byte), size, N and coefficient-modulus count (3 × u64), scale (f64),
correction factor (u64), then the coefficients as a `DynArray` (its own SEALHeader, a
u64 count, the u64 values). A *seeded* ciphertext stores only its first polynomial
and, in place of the second, the `UniformRandomGeneratorInfo` whose seed expands into
it (a SEALHeader and 65 bytes: generator type, 8 × u64 seed). After `Ciphertext.load`
nothing shows which form arrived, so the form is read here.

Why it matters: a seeded ciphertext's second polynomial is the expansion of a seed —
uniform — so without the secret key nobody can make one that decrypts to values of
their choice (that is RLWE). A full ciphertext can be hand-built from the public
parameters alone (c1 = 0 and c0 = Δm decrypts to m). Under the `seeded` preset every
honest upload is seeded, so the server refuses every other form.

No maintained library reads SEAL's format from Python (TenSEAL exposes only save/load
through files); this is the smallest reader of the fields the check needs, with the
decompression bounded by the size a ciphertext of these parameters can have.
"""

from __future__ import annotations

import io
import struct
import zlib

import zstandard

SEAL_MAGIC = 0xA15E
_HEADER = struct.Struct("<HBBBBHQ")  # magic, header size, major, minor, compression, -, size
_MEMBERS = struct.Struct("<32sBQQQdQ")  # parms_id, ntt, size, N, k, scale, correction
_RNG_INFO_BYTES = _HEADER.size + 1 + 8 * 8  # SEALHeader, generator type, 8 x u64 seed
COMPRESSION = {0: "none", 1: "zlib", 2: "zstd"}


class NotSeeded(ValueError):
    """Bytes that are not one seeded ciphertext of the expected parameters."""


def _seal_header(data: bytes, what: str) -> tuple[int, int]:
    """(compression mode, total size) of the SEAL object opening `data`."""
    if len(data) < _HEADER.size:
        raise NotSeeded(f"{what}: {len(data)} bytes, shorter than SEAL's header")
    magic, header_size, _, _, mode, _, size = _HEADER.unpack_from(data)
    if magic != SEAL_MAGIC or header_size != _HEADER.size:
        raise NotSeeded(f"{what}: not a SEAL object (magic {magic:#x}, header size {header_size})")
    if mode not in COMPRESSION:
        raise NotSeeded(f"{what}: compression mode {mode}, allowed {sorted(COMPRESSION)}")
    if size > len(data) or size < _HEADER.size:
        raise NotSeeded(f"{what}: header claims {size} bytes, {len(data)} present")
    return mode, size


def _inflate(mode: int, data: bytes, limit: int) -> bytes:
    """`data` decompressed, never more than `limit` bytes (a bomb is refused, not read)."""
    try:
        if mode == 0:
            body = data[: limit + 1]
        elif mode == 1:
            body = zlib.decompressobj().decompress(data, limit + 1)
        else:
            with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as reader:
                body = reader.read(limit + 1)
    except (zlib.error, zstandard.ZstdError) as err:
        raise NotSeeded(f"ciphertext does not decompress: {err}") from err
    if len(body) > limit:
        raise NotSeeded(f"ciphertext decompresses to more than {limit} bytes")
    return body


def require_seeded(blob: bytes, *, poly_modulus_degree: int, coeff_count: int) -> None:
    """Return if `blob` is exactly one seeded, two-part, non-NTT ciphertext with N =
    `poly_modulus_degree` and `coeff_count` coefficient primes; NotSeeded otherwise."""
    mode, size = _seal_header(blob, "ciphertext")
    if size != len(blob):
        raise NotSeeded(f"ciphertext has {len(blob) - size} bytes after its end")
    half = poly_modulus_degree * coeff_count  # coefficients of one polynomial
    limit = _MEMBERS.size + _HEADER.size + 8 + 8 * 2 * half + _RNG_INFO_BYTES
    body = _inflate(mode, blob[_HEADER.size :], limit)
    if len(body) < _MEMBERS.size:
        raise NotSeeded("ciphertext members are truncated")
    _, ntt, parts, n, k, _, _ = _MEMBERS.unpack_from(body)
    if (parts, n, k, ntt) != (2, poly_modulus_degree, coeff_count, 0):
        raise NotSeeded(
            f"a {parts}-part ciphertext with N={n}, {k} primes, NTT {ntt}; expected 2 parts, "
            f"N={poly_modulus_degree}, {coeff_count} primes, not NTT"
        )
    array = body[_MEMBERS.size :]
    _, array_size = _seal_header(array, "coefficients")
    (count,) = struct.unpack_from("<Q", array, _HEADER.size) if len(array) >= 24 else (-1,)
    if count == 2 * half:
        raise NotSeeded(
            "a full ciphertext, not a seeded one: under the seeded preset every upload is "
            "encrypted with the secret key, and a full one could be built without it"
        )
    if count != half or array_size != _HEADER.size + 8 + 8 * half:
        raise NotSeeded(f"{count} coefficients, expected {half} (one seeded polynomial)")
    seed = array[array_size:]
    if len(seed) != _RNG_INFO_BYTES:
        raise NotSeeded(f"no seed where the second polynomial's should be ({len(seed)} bytes)")
    _seal_header(seed, "seed")
