"""`fl-app`: operator commands (HE key provisioning, decrypting a final model)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fl_app.checkpoint import CheckpointError
from fl_app.crypto.keys import HEKeyError, generate_keys
from fl_app.crypto.payload import PayloadError
from fl_app.crypto.presets import PRESETS, get_preset


def _keygen(args: argparse.Namespace) -> int:
    manifest = generate_keys(args.out, args.preset, force=args.force)
    print(
        f"Wrote {args.out / 'secret.ctx'} (mode 0600, clients only), "
        f"{args.out / 'public.ctx'} (server) and {args.out / 'keys.json'}; "
        f"preset {manifest['preset']}, fingerprint {manifest['fingerprint']}"
    )
    return 0


def _decrypt(args: argparse.Namespace) -> int:
    # Imported here: keygen must not pay for TensorFlow.
    from fl_app.checkpoint import load_checkpoint
    from fl_app.config import compose_config
    from fl_app.crypto.keys import load_secret_context
    from fl_app.crypto.payload import decrypt_aggregate, to_payload
    from fl_app.fl.factory import new_model

    arrays, meta = load_checkpoint(args.checkpoint)
    identity = meta.get("identity", {})
    if not meta.get("encrypted"):
        raise ValueError(f"{args.checkpoint} holds a plaintext model; nothing to decrypt")
    preset = get_preset(identity["he_preset"])
    weights = decrypt_aggregate(load_secret_context(args.secret), preset, to_payload(arrays))
    cfg = compose_config([f"task={identity['task']}", f"task.model={identity['model']}"])
    net = new_model(cfg)
    net.set_weights(weights)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    net.save(args.out)
    print(
        f"Wrote {args.out}: {identity['task']}/{identity['model']} after round "
        f"{meta['completed_rounds']}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fl-app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    keygen = commands.add_parser(
        "keygen", help="make an HE key pair: secret.ctx for clients, public.ctx for the server"
    )
    keygen.add_argument("--out", type=Path, required=True, help="directory to write keys into")
    keygen.add_argument("--preset", default="compact", choices=sorted(PRESETS))
    keygen.add_argument("--force", action="store_true", help="replace existing key files")
    keygen.set_defaults(handler=_keygen)
    decrypt = commands.add_parser(
        "decrypt", help="turn an encrypted checkpoint into a normal .keras model"
    )
    decrypt.add_argument("--secret", type=Path, required=True, help="path of secret.ctx")
    decrypt.add_argument("--checkpoint", type=Path, required=True, help="checkpoint.npz of a run")
    decrypt.add_argument("--out", type=Path, required=True, help="the .keras file to write")
    decrypt.set_defaults(handler=_decrypt)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (HEKeyError, CheckpointError, PayloadError, ValueError) as err:
        print(f"fl-app {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
