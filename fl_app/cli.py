"""`fl-app`: operator commands (key provisioning)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fl_app.crypto.keys import HEKeyError, generate_keys
from fl_app.crypto.presets import PRESETS


def _keygen(args: argparse.Namespace) -> int:
    manifest = generate_keys(args.out, args.preset, force=args.force)
    print(
        f"Wrote {args.out / 'secret.ctx'} (mode 0600, clients only), "
        f"{args.out / 'public.ctx'} (server) and {args.out / 'keys.json'}; "
        f"preset {manifest['preset']}, fingerprint {manifest['fingerprint']}"
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (HEKeyError, ValueError) as err:
        print(f"fl-app {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
