"""HE contexts: build, save (secret 0600), load, public copy, guards, fingerprint."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from fl_app.crypto.backends import Context, backend_for, backend_of, context_from
from fl_app.crypto.presets import Preset, get_preset
from fl_app.crypto.secret_files import write_private

SECRET_NAME = "secret.ctx"
PUBLIC_NAME = "public.ctx"
MANIFEST_NAME = "keys.json"


class HEKeyError(ValueError):
    """A key file is missing, of the wrong kind, or does not match."""


def build_context(preset: Preset) -> Context:
    """A fresh private context (secret key included) for `preset`."""
    preset.check_security()
    return backend_for(preset).build(preset)


def secret_bytes(ctx: Context) -> bytes:
    """The whole context, secret key included: write it 0600."""
    return backend_of(ctx).to_bytes(ctx, secret=True)


def public_bytes(ctx: Context) -> bytes:
    """The context without secret key, Galois or relinearisation keys (sums need none)."""
    return backend_of(ctx).to_bytes(ctx, secret=False)


def fingerprint(ctx: Context) -> str:
    """A short hash of the public key; equal for a secret context and its public copy."""
    return hashlib.sha256(backend_of(ctx).public_key_bytes(ctx)).hexdigest()[:16]


def require_public(ctx: Context, where: str) -> Context:
    """Refuse a context holding the secret key where only a public one belongs."""
    if ctx.is_private():
        raise HEKeyError(
            f"{where} holds the HE secret key; the server must be given the public "
            f"context ({PUBLIC_NAME}) only"
        )
    return ctx


def require_private(ctx: Context, where: str) -> Context:
    """Refuse a public context where decryption is needed."""
    if not ctx.is_private():
        raise HEKeyError(f"{where} has no HE secret key; clients need {SECRET_NAME}")
    return ctx


def parameters_of(ctx: Context) -> str:
    """A context's scheme and encryption parameters, as one comparable line."""
    return backend_of(ctx).parameters(ctx)


def preset_parameters(preset: Preset) -> str:
    """What `parameters_of` says of a context built for `preset`."""
    line = (
        f"{preset.scheme.upper()} N={preset.poly_modulus_degree} "
        f"q bits={tuple(preset.coeff_mod_bit_sizes)}"
    )
    return line + (f" t bits={preset.plain_modulus_bits}" if preset.plain_modulus_bits else "")


def require_preset(ctx: Context, preset: Preset, where: str) -> Context:
    """Refuse a context that was not built for `preset` (scheme and parameters)."""
    found, expected = parameters_of(ctx), preset_parameters(preset)
    if found != expected:
        raise HEKeyError(
            f"{where} is {found}; preset {preset.name!r} needs {expected}: keys of another "
            "preset, or not made by fl-app keygen"
        )
    return ctx


def generate_keys(out_dir: Path, preset_name: str, *, force: bool = False) -> dict:
    """Write secret.ctx (0600), public.ctx and keys.json into `out_dir`."""
    preset = get_preset(preset_name)
    paths = [out_dir / n for n in (SECRET_NAME, PUBLIC_NAME, MANIFEST_NAME)]
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise HEKeyError(f"refusing to overwrite {existing}; pass --force to replace them")
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = build_context(preset)
    write_private(out_dir / SECRET_NAME, secret_bytes(ctx))
    (out_dir / PUBLIC_NAME).write_bytes(public_bytes(ctx))
    manifest = {"preset": preset.name, "scheme": preset.scheme, "fingerprint": fingerprint(ctx)}
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def load_context(path: Path) -> Context:
    """Deserialise a context file written by `generate_keys`."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise HEKeyError(f"cannot read HE context {path}: {err.strerror}") from err
    try:
        return context_from(data)
    except Exception as err:  # TenSEAL and SEAL raise bare ValueError/RuntimeError
        raise HEKeyError(f"{path} is not an HE context: {type(err).__name__}: {err}") from err


def load_public_context(path: Path) -> Context:
    """The server's context: must not hold the secret key."""
    return require_public(load_context(path), str(path))


def load_secret_context(path: Path) -> Context:
    """A client's context: must hold the secret key."""
    return require_private(load_context(path), str(path))
