"""`fl-app`: scaffold an app of your own task, provision keys and certificates, export
per-node data, run a local TLS federation, stop the local SuperLink `flwr run` left,
decrypt a final model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fl_app.cli.deploy import APP_HELP, add_federation_commands
from fl_app.crypto.keys import HEKeyError, generate_keys
from fl_app.crypto.payload import PayloadError
from fl_app.crypto.presets import PRESETS
from fl_app.quiet import LEVELS, setup
from fl_app.run.checkpoint import CheckpointError


def _keygen(args: argparse.Namespace) -> int:
    manifest = generate_keys(args.out, args.preset, force=args.force)
    print(
        f"Wrote {args.out / 'secret.ctx'} (mode 0600, clients only), "
        f"{args.out / 'public.ctx'} (server) and {args.out / 'keys.json'}; "
        f"preset {manifest['preset']}, fingerprint {manifest['fingerprint']}"
    )
    return 0


def _decrypt(args: argparse.Namespace) -> int:
    setup(args.log_level, tensorflow=True)  # keygen must not pay for TensorFlow
    from fl_app.ops.decrypt import decrypt_checkpoint

    print(decrypt_checkpoint(args.secret, args.checkpoint, args.out, app_dir=args.app))
    return 0


def _new(args: argparse.Namespace) -> int:
    from fl_app.ops.scaffold import new_app

    name = args.name or args.dir.resolve().name.replace("-", "_")
    new_app(args.dir, name)
    print(f"Wrote a Flower app for task '{name}' into {args.dir}; edit {name}_task.py and "
          f"conf/task/{name}.yaml, then: {run_hint(args.dir)}")  # fmt: skip
    return 0


def run_hint(app: Path) -> str:
    """How to run a new app: the local SuperLink `flwr run` starts must not `uv sync`
    the app's dependencies (fl_app is installed already, and on no index it could use)."""
    return f"cd {app} && FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 flwr run . --stream"


def _certs(args: argparse.Namespace) -> int:
    from fl_app.ops.provision import make_tls

    files = make_tls(args.out, args.host, days=args.days, force=args.force)
    print(
        f"Wrote {files.ca_cert} (give to SuperNodes and `flwr` users), {files.server_cert} "
        f"and {files.server_key} (SuperLink only, 0600); the CA key stays in {args.out}"
    )
    return 0


def _node_key(args: argparse.Namespace) -> int:
    from fl_app.ops.provision import make_node_key

    private, public = make_node_key(args.out, args.name, force=args.force)
    print(
        f"Wrote {private} (the SuperNode's --auth-supernode-private-key, 0600) and {public} "
        f"(register it: flwr supernode register {public} <connection>)"
    )
    return 0


def _summarize(args: argparse.Namespace) -> int:
    from fl_app.sweeps.summary import summarize_sweep

    for path in summarize_sweep(args.path):
        print(f"Wrote {path}")
    return 0


def _add_key_commands(commands: argparse._SubParsersAction) -> None:
    keygen = commands.add_parser(
        "keygen", help="make an HE key pair: secret.ctx for clients, public.ctx for the server"
    )
    keygen.add_argument("--out", type=Path, required=True, help="directory to write keys into")
    keygen.add_argument("--preset", default="seeded", choices=sorted(PRESETS))
    keygen.add_argument("--force", action="store_true", help="replace existing key files")
    keygen.set_defaults(handler=_keygen)
    decrypt = commands.add_parser(
        "decrypt", help="turn an encrypted checkpoint into a normal .keras model"
    )
    decrypt.add_argument("--secret", type=Path, required=True, help="path of secret.ctx")
    decrypt.add_argument("--checkpoint", type=Path, required=True, help="checkpoint.npz of a run")
    decrypt.add_argument("--out", type=Path, required=True, help="the .keras file to write")
    decrypt.add_argument("--app", type=Path, default=None, help=APP_HELP)
    decrypt.set_defaults(handler=_decrypt)
    new = commands.add_parser("new", help="scaffold a Flower app of your own task on fl_app")
    new.add_argument("dir", type=Path, help="the app directory to create")
    new.add_argument("--name", default=None, help="task name (default: the directory's)")
    new.set_defaults(handler=_new)
    certs = commands.add_parser("certs", help="make a CA and the SuperLink's TLS certificate")
    certs.add_argument("--out", type=Path, required=True)
    certs.add_argument(
        "--host", action="append", required=True, help="SAN: DNS name or IP (repeatable)"
    )
    certs.add_argument("--days", type=int, default=365)
    certs.add_argument("--force", action="store_true")
    certs.set_defaults(handler=_certs)
    node_key = commands.add_parser("node-key", help="make a SuperNode authentication key pair")
    node_key.add_argument("--out", type=Path, required=True)
    node_key.add_argument("--name", required=True, help="file name, e.g. hospital-a")
    node_key.add_argument("--force", action="store_true")
    node_key.set_defaults(handler=_node_key)


def _add_sweep_commands(commands: argparse._SubParsersAction) -> None:
    summary = commands.add_parser(
        "summarize", help="tables and plots for an fl-experiment multirun directory"
    )
    summary.add_argument("path", type=Path, help="e.g. multirun/2026-11-30/10-00-00")
    summary.set_defaults(handler=_summarize)


INTERNAL_COMMANDS = {"warm-superexec"}  # started by other commands; not in `fl-app --help`


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fl-app", description=__doc__)
    parser.add_argument(
        "--log-level", choices=LEVELS, default="info",
        help="debug also shows the frameworks' start-up lines (TensorFlow, CUDA probing)",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    _add_key_commands(commands)
    add_federation_commands(commands)
    _add_sweep_commands(commands)
    public = [name for name in commands.choices if name not in INTERNAL_COMMANDS]
    commands.metavar = "{" + ",".join(public) + "}"
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup(args.log_level)
    try:
        return args.handler(args)
    except (HEKeyError, CheckpointError, PayloadError, ValueError, OSError, RuntimeError) as err:
        print(f"fl-app {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
