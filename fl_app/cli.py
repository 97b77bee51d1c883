"""`fl-app`: scaffold an app of your own task, provision keys and certificates, export
per-node data, run a local TLS federation, decrypt a final model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fl_app.crypto.keys import HEKeyError, generate_keys
from fl_app.crypto.payload import PayloadError
from fl_app.crypto.presets import PRESETS
from fl_app.run.checkpoint import CheckpointError

APP_HELP = "a user's app directory (fl-app new); default: the current one, if it is an app"


def _keygen(args: argparse.Namespace) -> int:
    manifest = generate_keys(args.out, args.preset, force=args.force)
    print(
        f"Wrote {args.out / 'secret.ctx'} (mode 0600, clients only), "
        f"{args.out / 'public.ctx'} (server) and {args.out / 'keys.json'}; "
        f"preset {manifest['preset']}, fingerprint {manifest['fingerprint']}"
    )
    return 0


def _decrypt(args: argparse.Namespace) -> int:
    from fl_app.ops.decrypt import decrypt_checkpoint  # keygen must not pay for TensorFlow

    print(decrypt_checkpoint(args.secret, args.checkpoint, args.out, app_dir=args.app))
    return 0


def _new(args: argparse.Namespace) -> int:
    from fl_app.ops.scaffold import new_app

    name = args.name or args.dir.resolve().name.replace("-", "_")
    new_app(args.dir, name)
    print(f"Wrote a Flower app for task '{name}' into {args.dir}; edit {name}_task.py and "
          f"conf/task/{name}.yaml, then: cd {args.dir} && flwr run . --stream")  # fmt: skip
    return 0


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


def _export(args: argparse.Namespace) -> int:
    from fl_app.config.task import data_spec
    from fl_app.ml.data import PartitionSpec
    from fl_app.ml.node_files import export_partitions
    from fl_app.ops.apps import compose_for_app

    overrides = [f"task={args.task}", f"partition={args.partition}", *args.override]
    cfg = compose_for_app(overrides, args.app)
    spec = PartitionSpec.from_config(cfg.partition, args.num_partitions)
    paths = export_partitions(
        data_spec(cfg), spec, args.out, server_test_fraction=float(cfg.task.server_test_fraction),
        seed=int(cfg.seed), file_format=args.format,
    )  # fmt: skip
    print(f"Wrote {len(paths)} files to {args.out}: {paths[0].name} .. {paths[-1].name}")
    return 0


def _federation(args: argparse.Namespace) -> int:
    from fl_app.config.task import data_spec
    from fl_app.ml.data import PartitionSpec
    from fl_app.ops import federation as deploy
    from fl_app.ops.apps import compose_for_app

    if args.action == "down":
        stopped = deploy.down(args.dir)
        print(f"Stopped {', '.join(stopped) or 'nothing (no running processes)'}")
        return 0
    spec = PartitionSpec(args.partition, args.nodes, alpha=args.alpha)
    info = deploy.up(
        args.dir,
        num_nodes=args.nodes,
        task=args.task,
        data=data_spec(compose_for_app([f"task={args.task}"], args.app)),
        partition=spec,
        preset=args.preset,
        port=args.port,
        warm=not args.cold,
    )
    print(
        f"SuperLink {info['address']} (TLS, node auth) with {args.nodes} SuperNodes; logs in "
        f"{args.dir / 'logs'}; connection '{info['connection']}' in "
        f"{info['flwr_home']}/config.toml. Train with:"
    )
    overrides = (
        f"federation=deployment federation.num_supernodes={args.nodes} task={args.task} "
        f"he.preset={args.preset} he.public_context={info['public_context']}"
    )
    print(f"  flwr run . {info['connection']} --stream --run-config \"overrides='{overrides}'\"")
    print(f"Stop it with: fl-app federation down --dir {args.dir}")
    return 0


def _summarize(args: argparse.Namespace) -> int:
    from fl_app.sweeps.summary import summarize_sweep

    for path in summarize_sweep(args.path):
        print(f"Wrote {path}")
    return 0


def _warm_superexec(args: argparse.Namespace) -> int:
    from fl_app.ops import warm_exec

    warm_exec.run(
        args.runtime_api_address,
        insecure=args.insecure,
        root_certificates=args.root_certificates,
        parent_pid=args.parent_pid,
    )
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


def _add_federation_commands(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser("export-partitions", help="write one data file per node")
    export.add_argument("--task", default="digits")
    export.add_argument("--partition", default="iid")
    export.add_argument("--num-partitions", type=int, required=True)
    export.add_argument("--out", type=Path, required=True)
    export.add_argument("--format", choices=["npz", "csv", "parquet"], default="npz")
    export.add_argument("--app", type=Path, default=None, help=APP_HELP)
    export.add_argument(
        "override", nargs="*", help="further Hydra overrides, e.g. partition.alpha=0.3 seed=1"
    )
    export.set_defaults(handler=_export)
    federation = commands.add_parser(
        "federation", help="start/stop a local TLS + node-auth federation on 127.0.0.1"
    )
    federation.add_argument("action", choices=["up", "down"])
    federation.add_argument("--dir", type=Path, required=True, help="keys, data, logs, PIDs")
    federation.add_argument("--nodes", type=int, default=2)
    federation.add_argument("--task", default="digits")
    federation.add_argument("--app", type=Path, default=None, help=APP_HELP)
    federation.add_argument("--partition", default="iid", choices=["iid", "dirichlet"])
    federation.add_argument("--alpha", type=float, default=0.5)
    federation.add_argument("--preset", default="seeded", choices=sorted(PRESETS))
    federation.add_argument("--port", type=int, default=None, help="SuperLink port")
    federation.add_argument(
        "--cold", action="store_true", help="Flower's default: a new process per ClientApp task"
    )
    federation.set_defaults(handler=_federation)
    # Internal (INTERNAL_COMMANDS): `federation up` starts one beside each SuperNode.
    warm = commands.add_parser(
        "warm-superexec",
        description="(internal) serve a SuperNode's ClientApp tasks from one warm process "
        "(--isolation process); started by `fl-app federation up`",
    )
    warm.add_argument("--runtime-api-address", required=True, help="the SuperNode's --port")
    warm.add_argument("--insecure", action="store_true")
    warm.add_argument("--root-certificates", default=None)
    warm.add_argument("--parent-pid", type=int, default=None)
    warm.set_defaults(handler=_warm_superexec)


def _add_sweep_commands(commands: argparse._SubParsersAction) -> None:
    summary = commands.add_parser(
        "summarize", help="tables and plots for an fl-experiment multirun directory"
    )
    summary.add_argument("path", type=Path, help="e.g. multirun/2026-11-30/10-00-00")
    summary.set_defaults(handler=_summarize)


INTERNAL_COMMANDS = {"warm-superexec"}  # started by other commands; not in `fl-app --help`


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fl-app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_key_commands(commands)
    _add_federation_commands(commands)
    _add_sweep_commands(commands)
    public = [name for name in commands.choices if name not in INTERNAL_COMMANDS]
    commands.metavar = "{" + ",".join(public) + "}"
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (HEKeyError, CheckpointError, PayloadError, ValueError, OSError, RuntimeError) as err:
        print(f"fl-app {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
