"""The server's HE material: the public context only, never the secret key."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fl_app.config import ConfigError
from fl_app.config.schema import AppConfig
from fl_app.crypto.keys import (
    MANIFEST_NAME,
    PUBLIC_NAME,
    SECRET_NAME,
    HEKeyError,
    fingerprint,
    generate_keys,
    load_public_context,
    require_preset,
)
from fl_app.crypto.presets import Preset, get_preset

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerKeys:
    """The public context the server adds ciphertexts under, and what identifies it."""

    context: Any  # a TenSEAL context without the secret key
    preset: Preset
    fingerprint: str
    # Simulation with generated keys only: where clients find the secret context.
    simulation_secret_path: str = ""

    @classmethod
    def load(cls, cfg: AppConfig, run_dir: Path, *, generate: bool = True) -> ServerKeys:
        """`he.public_context`, or in simulation the keys generated into `<run_dir>/keys`
        (made now if `generate`; a resumed run must find its own). The context must be
        public and built for `he.preset`, whether or not a `keys.json` says so."""
        secret_path = ""
        if cfg.he.public_context:
            path = Path(cfg.he.public_context).expanduser()
        elif cfg.federation.name == "simulation":
            path = _generated_public_context(run_dir / "keys", cfg.he.preset, generate)
            if not cfg.he.secret_context:
                secret_path = str(path.parent / SECRET_NAME)
        else:
            raise ConfigError(
                "he.public_context is empty: allowed a path to public.ctx outside simulation"
            )
        context = load_public_context(path)
        preset = get_preset(cfg.he.preset)
        _check_manifest(path.parent / MANIFEST_NAME, preset)
        try:
            require_preset(context, preset, str(path))
        except HEKeyError as err:
            raise ConfigError(f"he.preset={preset.name!r} is invalid for {path}: {err}") from err
        return cls(context, preset, fingerprint(context), secret_path)


def _generated_public_context(key_dir: Path, preset: str, generate: bool) -> Path:
    path = key_dir / PUBLIC_NAME
    if not path.exists() and not generate:
        raise ConfigError(
            f"he.public_context is empty and {path} does not exist: a resumed simulation "
            "uses the keys its first run generated; allowed the path of its public.ctx"
        )
    if not path.exists():
        generate_keys(key_dir, preset)
        logger.info(
            "No he.public_context configured: generated %s HE keys into %s "
            "(simulation only; provision deployments with `fl-app keygen`)",
            preset,
            key_dir,
        )
    return path


def _check_manifest(manifest_path: Path, preset: Preset) -> None:
    if not manifest_path.exists():
        return
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("preset") != preset.name:
        raise ConfigError(
            f"he.preset={preset.name!r} is invalid for the keys in "
            f"{manifest_path.parent}: they were made for preset {manifest.get('preset')!r}"
        )
