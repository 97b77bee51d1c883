"""A real Flower deployment on this machine: SuperLink + SuperNodes over TLS with node
authentication, each node with its own data file and the HE secret context.

`up` provisions what is missing (CA and SuperLink certificate, node keys, HE keys, data
files), starts the processes with one log file each and a PID file each, registers the
node keys, and writes a connection into FLWR_HOME. `down` stops exactly the processes
whose PID files `up` wrote (each in its own process group), and nothing else.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from fl_app.crypto.keys import PUBLIC_NAME, SECRET_NAME, generate_keys
from fl_app.fl.protocol import NODE_DATA_KEY, NODE_SECRET_KEY
from fl_app.ml.data import PartitionSpec
from fl_app.ml.node_files import check_node_files, export_partitions
from fl_app.ml.sources import DataSpec
from fl_app.ops import procs
from fl_app.ops.flower import (
    FlowerCLI,
    flower_bin,
    flwr_home,
    free_port,
    path_with_flower,
    wait_healthy,
)
from fl_app.ops.provision import TlsFiles, make_tls, register_fresh_node_keys, write_connection

CONNECTION = "fl-app-local"


@dataclass(frozen=True)
class FederationDirs:
    """Where a local federation keeps its files."""

    root: Path
    tls: Path  # CA, SuperLink certificate and key
    he: Path  # secret.ctx, public.ctx, keys.json
    nodes: Path  # SuperNode authentication key pairs
    data: Path  # one data file per node
    logs: Path  # one log per process
    pids: Path  # one PID file per process (each its own process group)
    state: Path  # the running federation's description (JSON)

    @classmethod
    def at(cls, root: Path) -> FederationDirs:
        return cls(
            root=root,
            tls=root / "tls",
            he=root / "he",
            nodes=root / "node-keys",
            data=root / "data",
            logs=root / "logs",
            pids=root / "pids",
            state=root / "federation.json",
        )


def start_process(name: str, command: list[str], where: FederationDirs, env: dict[str, str]) -> int:
    """Start a process in its own process group, logging to logs/<name>.log, PID in pids/."""
    pid_file = where.pids / f"{name}.pid"
    if pid_file.exists() and procs.group_alive(int(pid_file.read_text())):
        raise RuntimeError(f"{name} is already running (PID file {pid_file})")
    process = procs.start_group(command, where.logs / f"{name}.log", path_with_flower(env))
    where.pids.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{process.pid}\n")
    return process.pid


def up(
    root: Path,
    *,
    num_nodes: int,
    task: str = "digits",
    data: DataSpec | None = None,
    partition: PartitionSpec | None = None,
    preset: str = "seeded",
    seed: int = 42,
    port: int | None = None,
    warm: bool = True,
    files: list[Path] | None = None,
) -> dict:
    """Provision and start a local TLS + node-auth federation whose SuperNodes each hold a
    partition of `data` (default: the bundled set `task`), or with `files`, one of the
    user's own files each (checked first); return its description. Every row of the
    source goes to a node: the server of a deployment holds no test set of its own."""
    where = FederationDirs.at(root.resolve())
    if where.state.exists():
        raise RuntimeError(f"{where.root} already runs a federation; run `down` first")
    if num_nodes < 1:
        raise ValueError(f"num_nodes={num_nodes} is invalid: allowed >= 1")
    port = port or free_port()
    home = flwr_home()
    # A privacy product's federation does not report usage to a third party.
    env = {**os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0"}
    files, rows = _node_data(
        where, files, data or task, partition or PartitionSpec("iid", num_nodes), seed
    )
    tls = make_tls(where.tls, ["127.0.0.1", "localhost"], force=True)
    if not (where.he / PUBLIC_NAME).exists():
        generate_keys(where.he, preset)
    pids: dict[str, int] = {}
    try:
        pids["superlink"] = _start_superlink(where, tls, port, env)
        write_connection(CONNECTION, f"127.0.0.1:{port}", tls.ca_cert, home)
        keys = register_fresh_node_keys(FlowerCLI(env, CONNECTION), where.nodes, len(files))
        for index, (data_file, private) in enumerate(zip(files, keys, strict=True)):
            pids.update(
                start_supernode(where, index, port, tls.ca_cert, private, data_file, env, warm=warm)
            )
    except BaseException:
        stop_processes(where)
        raise
    description = {
        "connection": CONNECTION,
        "address": f"127.0.0.1:{port}",
        "root_certificates": str(tls.ca_cert),
        "public_context": str(where.he / PUBLIC_NAME),
        "num_nodes": len(files),
        "task": task,
        "data": {str(f): n for f, n in zip(files, rows, strict=True)},  # rows per node
        "pids": pids,
        "flwr_home": str(home),
    }
    where.state.write_text(json.dumps(description, indent=2) + "\n")
    return description


def _node_data(
    where: FederationDirs,
    files: list[Path] | None,
    data: DataSpec | str,
    spec: PartitionSpec,
    seed: int,
) -> tuple[list[Path], list[int]]:
    """The nodes' files and their rows: the user's own, refused before anything starts if
    they do not fit; else exported, every row on a node (no server test set: HE)."""
    if files:
        files = [Path(f).resolve() for f in files]
    else:
        files = export_partitions(data, spec, where.data, server_test_fraction=0.0, seed=seed)
    return files, check_node_files(files, data)


def _start_superlink(where: FederationDirs, tls: TlsFiles, port: int, env: dict[str, str]) -> int:
    """The SuperLink with TLS and node authentication, once its health endpoint answers."""
    pid = start_process(
        "superlink",
        [
            flower_bin("flower-superlink"),
            "--ssl-ca-certfile", str(tls.ca_cert),
            "--ssl-certfile", str(tls.server_cert),
            "--ssl-keyfile", str(tls.server_key),
            "--enable-supernode-auth",
            "--disable-runtime-dependency-installation",
            "--host", "127.0.0.1",
            "--port", str(port),
            "--database", str(where.root / "superlink.db"),
        ],
        where,
        env,
    )  # fmt: skip
    wait_healthy(
        f"https://127.0.0.1:{port}/health",
        alive=lambda: procs.alive(pid),
        verify=str(tls.ca_cert),
    )
    return pid


def start_supernode(
    where: FederationDirs,
    index: int,
    port: int,
    ca_cert: Path,
    private_key: Path,
    data_file: Path,
    env: dict[str, str],
    *,
    name: str | None = None,
    warm: bool = False,
) -> dict[str, int]:
    """Start one SuperNode that reads only its own data file and the HE secret context.

    The SuperNode is Flower's, run by `fl-app supernode` (fl_app.ops.supernode) so that
    it waits 0.25 s, not 3 s, between pulls that find nothing. With `warm`, it runs in
    `--isolation process` mode and a warm SuperExec (`fl-app warm-superexec`) serves its
    ClientApp tasks; otherwise the SuperNode starts a new process per task itself.
    Returns {process name: PID}.
    """
    name = name or f"supernode{index}"
    runtime_port = free_port()
    node_config = f'{NODE_DATA_KEY}="{data_file}" {NODE_SECRET_KEY}="{where.he / SECRET_NAME}"'
    command = [
        flower_bin("fl-app"), "supernode",
        "--superlink", f"127.0.0.1:{port}",
        "--root-certificates", str(ca_cert),
        "--auth-supernode-private-key", str(private_key),
        "--port", str(runtime_port),
        "--node-config", node_config,
    ]  # fmt: skip
    if warm:
        command += ["--isolation", "process"]
    pids = {name: start_process(name, command, where, env)}
    if warm:
        pids[f"{name}-exec"] = start_process(
            f"{name}-exec",
            [flower_bin("fl-app"), "warm-superexec", "--insecure",
             "--runtime-api-address", f"127.0.0.1:{runtime_port}"],
            where,
            env,
        )  # fmt: skip
    return pids


def stop_processes(where: FederationDirs, timeout: float = 20.0) -> list[str]:
    """Stop the process groups named by PID files under `where`, nodes before the link."""
    if not where.pids.exists():
        return []
    pid_files = sorted(where.pids.glob("*.pid"), key=lambda p: p.stem == "superlink")
    stopped = []
    for pid_file in pid_files:
        # started with start_new_session: PID == PGID
        if procs.stop_group(int(pid_file.read_text()), timeout):
            stopped.append(pid_file.stem)
        pid_file.unlink()
    return stopped


def down(root: Path) -> list[str]:
    """Stop what `up` started under `root`."""
    where = FederationDirs.at(root.resolve())
    stopped = stop_processes(where)
    where.state.unlink(missing_ok=True)
    return stopped
