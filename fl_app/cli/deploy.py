"""`fl-app` commands that run a federation: per-node data, a local TLS deployment, the
SuperNode and warm SuperExec it starts, and the local SuperLink that `flwr run` leaves."""

from __future__ import annotations

import argparse
from pathlib import Path

from fl_app.crypto.presets import PRESETS

APP_HELP = "a user's app directory (fl-app new); default: the current one, if it is an app"


def _export(args: argparse.Namespace) -> int:
    from fl_app.config.task import data_spec
    from fl_app.ml.data import PartitionSpec
    from fl_app.ml.node_files import export_partitions
    from fl_app.ops.apps import compose_for_app

    overrides = [f"task={args.task}", f"partition={args.partition}", *args.override]
    cfg = compose_for_app(overrides, args.app)
    spec = PartitionSpec.from_config(cfg.partition, args.num_partitions)
    paths = export_partitions(
        data_spec(cfg.task, cfg.partition), spec, args.out,
        server_test_fraction=cfg.task.server_test_fraction, seed=cfg.seed, file_format=args.format,
    )  # fmt: skip
    print(f"Wrote {len(paths)} files to {args.out}: {paths[0].name} .. {paths[-1].name}")
    print(f"Rows: {rows_of(paths, cfg)}")
    return 0


def rows_of(paths: list[Path], cfg) -> str:
    """Where every row of the source went: each file's, and the server's test set."""
    from fl_app.config.task import data_spec
    from fl_app.ml.data import pool_and_server_test
    from fl_app.ml.node_files import check_node_files

    data = data_spec(cfg.task, cfg.partition)
    held = len(pool_and_server_test(data, cfg.task.server_test_fraction, cfg.seed)[1])
    counts = check_node_files(paths, data)
    each = ", ".join(f"{p.name} {n}" for p, n in zip(paths, counts, strict=True))
    return f"{each}; {held} held out for the server's test set (task.server_test_fraction)"


def _federation(args: argparse.Namespace) -> int:
    from fl_app.config.task import data_spec
    from fl_app.ml.data import PartitionSpec
    from fl_app.ops import local_deployment as deploy
    from fl_app.ops.apps import compose_for_app

    if args.action == "down":
        stopped = deploy.down(args.dir)
        print(f"Stopped {', '.join(stopped) or 'nothing (no running processes)'}")
        return 0
    files = node_files(args.data)
    nodes = args.nodes or len(files) or 2
    if files and args.nodes and args.nodes != len(files):
        raise SystemExit(f"--nodes {args.nodes} is invalid: --data gives {len(files)} files")
    spec = PartitionSpec(args.partition, nodes, alpha=args.alpha, by=args.by)
    chosen = [f"task={args.task}", f"partition={args.partition}", f"partition.by='{args.by}'"]
    cfg = compose_for_app(chosen, args.app)
    info = deploy.up(
        args.dir,
        files=files or None,
        num_nodes=nodes,
        task=args.task,
        data=data_spec(cfg.task, cfg.partition),
        partition=spec,
        preset=args.preset,
        port=args.port,
        warm=not args.cold,
    )
    _print_federation(info, nodes, args)
    return 0


def _print_federation(info: dict, nodes: int, args: argparse.Namespace) -> None:
    """Where every row went, what runs where, and the `flwr run` line."""
    rows = info["data"]
    print(f"Data: {sum(rows.values())} rows, every one on a node: "
          + ", ".join(f"{Path(f).name} {n}" for f, n in rows.items()))  # fmt: skip
    print(
        f"SuperLink {info['address']} (TLS, node auth) with {nodes} SuperNodes; logs in "
        f"{args.dir / 'logs'}; connection '{info['connection']}' in "
        f"{info['flwr_home']}/config.toml. Train with:"
    )
    overrides = (
        f"federation=deployment federation.num_supernodes={nodes} task={args.task} "
        f"he.preset={args.preset} he.public_context={info['public_context']}"
    )
    print(f"  flwr run . {info['connection']} --stream --run-config \"overrides='{overrides}'\"")
    print(f"Stop it with: fl-app federation down --dir {args.dir}")


def node_files(given: list[Path]) -> list[Path]:
    """`--data`: files as given, a directory as its .npz/.csv/.parquet files, sorted."""
    files: list[Path] = []
    for path in given:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".npz", ".csv", ".parquet"))
            if not found:
                raise SystemExit(f"--data {path}: no .npz, .csv or .parquet file in it")
            files += found
        else:
            files.append(path)
    return files


def _warm_superexec(args: argparse.Namespace) -> int:
    from fl_app.ops import warm_exec

    warm_exec.run(
        args.runtime_api_address,
        insecure=args.insecure,
        root_certificates=args.root_certificates,
        parent_pid=args.parent_pid,
    )
    return 0


class _FlowerArgs(argparse.Action):
    """flower-supernode's arguments, as given; `-h`/`--help` among them shows fl-app's help."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: list[str],
        option_string: str | None = None,
    ) -> None:
        if {"-h", "--help"} & set(values):
            parser.print_help()
            parser.exit()
        setattr(namespace, self.dest, values)


def _supernode(args: argparse.Namespace) -> int:
    from fl_app.ops import supernode

    supernode.run(args.flower_args)
    return 0


def _superlink(args: argparse.Namespace) -> int:
    from fl_app.ops.local_superlink import stop_flwr_local_superlink

    stopped = stop_flwr_local_superlink()
    for pid in stopped:
        print(f"Stopped the local SuperLink (PID {pid}) that `flwr run` started.")
    if not stopped:
        print("No local SuperLink of `flwr run` is running for this FLWR_HOME and port.")
    return 0


def add_federation_commands(commands: argparse._SubParsersAction) -> None:
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
    _add_federation_command(commands)


def _add_federation_command(commands: argparse._SubParsersAction) -> None:
    federation = commands.add_parser(
        "federation", help="start/stop a local TLS + node-auth federation on 127.0.0.1"
    )
    federation.add_argument("action", choices=["up", "down"])
    federation.add_argument("--dir", type=Path, required=True, help="keys, data, logs, PIDs")
    federation.add_argument(
        "--nodes", type=int, default=None, help="default: 2, or one per --data file"
    )
    federation.add_argument(
        "--data", nargs="+", type=Path, default=[],
        help="your own node files (a directory of them, or the files): one per SuperNode",
    )  # fmt: skip
    federation.add_argument("--task", default="digits")
    federation.add_argument("--app", type=Path, default=None, help=APP_HELP)
    federation.add_argument("--partition", default="iid", choices=["iid", "dirichlet", "natural"])
    federation.add_argument("--alpha", type=float, default=0.5)
    federation.add_argument("--by", default="", help="natural: the column naming each node's site")
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
    # `+` prefix: no argument is fl-app's, so Flower's options pass through unparsed.
    supernode = commands.add_parser(
        "supernode", prefix_chars="+", add_help=False,
        help="flower-supernode with a 0.25 s idle wait between pulls, not 3 s",
        description="Run Flower's SuperNode (flower-supernode) with a short idle wait "
        "between pulls that find no message: FL_APP_SUPERNODE_IDLE_SECONDS "
        "(default 0.25; Flower's is 3). Started by `fl-app federation up`.",
        epilog="Arguments: flower-supernode's, unchanged (see flower-supernode --help).",
    )  # fmt: skip
    supernode.add_argument(
        "flower_args", nargs=argparse.REMAINDER, action=_FlowerArgs,
        metavar="FLOWER_SUPERNODE_ARGS",
    )  # fmt: skip
    supernode.set_defaults(handler=_supernode)
    superlink = commands.add_parser(
        "superlink", help="the local simulation SuperLink that `flwr run .` starts"
    )
    superlink.add_argument("action", choices=["stop"], help="stop it (by its PID)")
    superlink.set_defaults(handler=_superlink)
