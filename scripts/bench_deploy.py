#!/usr/bin/env python3
"""Per-round overhead of a real deployment, for these configurations:

- cold: a new ClientApp process per message (Flower's default), fl_app's polling;
- warm-3s: warm ClientApps (`fl-app warm-superexec` forks each from a process that has
  TensorFlow imported) and the ServerApp polling for replies every 3 s, as Flower's own
  grid does (`federation.poll_interval=3 federation.poll_max_interval=3`): "before";
- warm: warm ClientApps and fl_app's short doubling poll (the defaults): "after";
- warm-every2: as warm, with federated evaluation every 2nd round
  (`strategy.evaluate_every=2`; the last round always evaluates);
- warm-with-fit: as warm, every round evaluated inside the next round's fit
  (`strategy.evaluate_with_fit=true`): one message per round, the last round two. This
  is also the default when fit and evaluation sample alike (fraction_fit ==
  fraction_evaluate, as by default), so `warm` runs the same messages;
- warm-eval-msgs: as warm, with separate evaluate messages
  (`strategy.evaluate_with_fit=false`): two messages per round.

Each configuration runs with each SuperNode of `--supernodes`: `fl-app` (fl_app's default
0.25 s idle wait between the SuperNode's pulls) and `flower` (the same SuperNode with
`FL_APP_SUPERNODE_IDLE_SECONDS=3`, Flower 1.42's own fixed wait; fl_app.ops.supernode).

For each: start a local TLS + node-auth federation (`fl_app.ops.local_deployment.up`), run HE
training (the default preset), and compute the overhead of rounds 2..R = their wall
time - the mean local training time - the mean local evaluation time of the
evaluations performed in them (both reported by the clients; under evaluate_with_fit a
round's evaluation is performed in the next round), per round. Round 1 also learns
example counts and is left out. Also the pickup delay of every instruction message: from
its creation (`created_at`, set by the ServerApp's push) to its delivery to a SuperNode
(`delivered_at`), read from the SuperLink's database every 0.1 s while the run goes
(Flower deletes a message once its reply is read, so a short-lived one can be missed),
and per round of 2..R the time the round waited for pickups (each stage's slowest node).
Prints a table and writes JSON:

    python scripts/bench_deploy.py --nodes 2 --rounds 5 --out bench_deploy.json
    python scripts/bench_deploy.py --modes warm warm-with-fit --supernodes flower fl-app
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import tempfile
import threading
from datetime import datetime
from pathlib import Path

from fl_app.ops import local_deployment as deploy
from fl_app.ops import supernode as fl_app_supernode
from fl_app.ops.flower import FlowerCLI

# name -> (warm ClientApps, extra Hydra overrides)
CONFIGS = {
    "cold": (False, ""),
    "warm-3s": (True, "federation.poll_interval=3 federation.poll_max_interval=3"),
    "warm": (True, ""),
    "warm-every2": (True, "strategy.evaluate_every=2"),
    "warm-with-fit": (True, "strategy.evaluate_with_fit=true"),
    "warm-eval-msgs": (True, "strategy.evaluate_with_fit=false"),
}
# SuperNode -> its idle wait between pulls that find nothing (None: fl_app's default)
SUPERNODES = {"flower": str(fl_app_supernode.FLOWER_IDLE_SECONDS), "fl-app": None}


class RunObserver(threading.Thread):
    """Every 0.1 s: when each instruction message was created and delivered, and the
    machine's load (other people's work on this machine changes between runs)."""

    QUERY = (
        "SELECT message_id, message_type, group_id, created_at, delivered_at FROM message_ins "
        "WHERE delivered_at != ''"
    )

    def __init__(self, database: Path) -> None:
        super().__init__(daemon=True)
        self.database, self.stop = database, threading.Event()
        self.pickups: dict[str, tuple[str, str, float]] = {}  # id -> (type, round, seconds)
        self.loads: list[float] = []  # 1-minute load average

    def run(self) -> None:
        while not self.stop.wait(0.1):
            self.loads.append(os.getloadavg()[0])
            try:
                with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True) as db:
                    rows = db.execute(self.QUERY).fetchall()
            except sqlite3.Error:  # not created yet, or busy for a moment
                continue
            for message_id, kind, group, created, delivered in rows:
                seconds = datetime.fromisoformat(delivered).timestamp() - created
                self.pickups.setdefault(message_id, (kind, group, seconds))

    def wait_per_round(self, first: int) -> float:
        """Mean over rounds >= `first` of the time a round waited for its messages to be
        picked up: per stage (message type) the slowest node's pickup, summed."""
        slowest: dict[tuple[str, str], float] = {}
        for kind, group, seconds in self.pickups.values():
            if group.isdigit() and int(group) >= first:
                slowest[group, kind] = max(seconds, slowest.get((group, kind), 0.0))
        rounds = {group for group, _ in slowest}
        return sum(slowest.values()) / len(rounds) if rounds else float("nan")

    def __enter__(self) -> RunObserver:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.join()


def measure(mode: str, supernode: str, nodes: int, rounds: int, workdir: Path) -> dict:
    label = f"{mode}_{supernode}"
    os.environ["FLWR_HOME"] = str(workdir / f"flwr_home_{label}")
    idle = SUPERNODES[supernode]
    if idle is None:
        os.environ.pop(fl_app_supernode.IDLE_ENV, None)
    else:
        os.environ[fl_app_supernode.IDLE_ENV] = idle  # the SuperNodes inherit it
    fed = workdir / f"fed_{label}"
    warm, extra = CONFIGS[mode]
    info = deploy.up(fed, num_nodes=nodes, task="digits", warm=warm)
    out = workdir / f"run_{label}"
    try:
        overrides = (
            f"federation=deployment federation.num_supernodes={nodes} task=digits "
            f"he.public_context={info['public_context']} {extra}"
        )
        with RunObserver(fed / "superlink.db") as observed:
            result = FlowerCLI(dict(os.environ), deploy.CONNECTION).submit(
                f"num-server-rounds={rounds} output-dir='{out}' overrides='{overrides}'",
                timeout=1800,
            )
        if result.status != "finished:completed":
            raise RuntimeError(f"{label} run ended {result.status}:\n{result.output[-2000:]}")
    finally:
        deploy.down(fed)
    rows = [row for row in json.loads((out / "metrics.json").read_text()) if row["round"] >= 1]
    later = rows[1:]
    # evaluations performed in rounds 2..R: with evaluate_with_fit (the default here: no
    # configuration changes the fractions) those of rounds 1..R-1 ride on the next fit
    with_fit = "evaluate_with_fit=false" not in extra
    performed = rows if with_fit else later
    busy = sum(r["train_seconds"] for r in later) + sum(
        r.get("eval_seconds") or 0.0 for r in performed
    )
    return {
        "mode": mode,
        "supernode": supernode,
        "supernode_idle_seconds": float(idle or fl_app_supernode.IDLE_DEFAULT),
        "overrides": extra,
        "nodes": nodes,
        "rounds": [
            {k: r.get(k) for k in ("round", "round_seconds", "train_seconds", "eval_seconds")}
            for r in rows
        ],
        "evaluated_rounds": [r["round"] for r in rows if r.get("eval_seconds") is not None],
        "median_round_seconds": statistics.median(r["round_seconds"] for r in later),
        "mean_overhead_seconds": (sum(r["round_seconds"] for r in later) - busy) / len(later),
        "pickups": sorted(observed.pickups.values(), key=lambda p: (p[1], p[0])),
        "pickup_seconds": sorted(seconds for *_, seconds in observed.pickups.values()),
        "pickup_wait_per_round_seconds": observed.wait_per_round(first=2),
        "mean_load": statistics.mean(observed.loads or [float("nan")]),
        "cpus": os.cpu_count(),
        "final_accuracy": json.loads((out / "summary.json").read_text())["final_accuracy"],
    }


def print_table(results: list[dict], nodes: int, rounds: int) -> None:
    nan = float("nan")
    print(f"Deployment, {nodes} SuperNodes, HE (default preset), digits; rounds 2..{rounds}:")
    print(
        "| configuration | SuperNode idle wait | rounds evaluated | round s (median) "
        "| overhead s per round | pickup s (mean, max, messages) | pickup wait s per round "
        "| load (mean) | final accuracy |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        pickups = r["pickup_seconds"] or [nan]
        print(
            f"| {r['mode']} | {r['supernode']} ({r['supernode_idle_seconds']:g} s) | "
            f"{', '.join(map(str, r['evaluated_rounds']))} | "
            f"{r['median_round_seconds']:.2f} | {r['mean_overhead_seconds']:.2f} | "
            f"{statistics.mean(pickups):.2f}, {max(pickups):.2f}, {len(r['pickup_seconds'])} | "
            f"{r['pickup_wait_per_round_seconds']:.2f} | {r['mean_load']:.1f} | "
            f"{r['final_accuracy']:.4f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["warm-3s", "warm", "warm-every2", "warm-with-fit"],
        choices=list(CONFIGS),
    )
    parser.add_argument(
        "--supernodes", nargs="+", default=["fl-app"], choices=list(SUPERNODES),
        help="flower: Flower's fixed 3 s idle wait; fl-app: fl_app's short one",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("bench_deploy.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [
            measure(mode, node, args.nodes, args.rounds, Path(tmp))
            for mode in args.modes
            for node in args.supernodes
        ]
    print_table(results, args.nodes, args.rounds)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
