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
  (`strategy.evaluate_with_fit=true`): one message per round, the last round two.

For each: start a local TLS + node-auth federation (`fl_app.ops.local_deployment.up`), run HE
training (the default preset), and compute the overhead of rounds 2..R = their wall
time - the mean local training time - the mean local evaluation time of the
evaluations performed in them (both reported by the clients; under evaluate_with_fit a
round's evaluation is performed in the next round), per round. Round 1 also learns
example counts and is left out. Prints a table and writes JSON:

    python scripts/bench_deploy.py --nodes 2 --rounds 5 --out bench_deploy.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

from fl_app.ops import local_deployment as deploy
from fl_app.ops.flower import FlowerCLI

# name -> (warm ClientApps, extra Hydra overrides)
CONFIGS = {
    "cold": (False, ""),
    "warm-3s": (True, "federation.poll_interval=3 federation.poll_max_interval=3"),
    "warm": (True, ""),
    "warm-every2": (True, "strategy.evaluate_every=2"),
    "warm-with-fit": (True, "strategy.evaluate_with_fit=true"),
}


def measure(mode: str, nodes: int, rounds: int, workdir: Path) -> dict:
    os.environ["FLWR_HOME"] = str(workdir / f"flwr_home_{mode}")
    fed = workdir / f"fed_{mode}"
    warm, extra = CONFIGS[mode]
    info = deploy.up(fed, num_nodes=nodes, task="digits", warm=warm)
    out = workdir / f"run_{mode}"
    try:
        overrides = (
            f"federation=deployment federation.num_supernodes={nodes} task=digits "
            f"he.public_context={info['public_context']} {extra}"
        )
        result = FlowerCLI(dict(os.environ), deploy.CONNECTION).submit(
            f"num-server-rounds={rounds} output-dir='{out}' overrides='{overrides}'", timeout=1800
        )
        if result.status != "finished:completed":
            raise RuntimeError(f"{mode} run ended {result.status}:\n{result.output[-2000:]}")
    finally:
        deploy.down(fed)
    rows = [row for row in json.loads((out / "metrics.json").read_text()) if row["round"] >= 1]
    later = rows[1:]
    # evaluations performed in rounds 2..R: those of rounds 1..R-1 ride on the next fit
    performed = rows if "evaluate_with_fit=true" in extra else later
    busy = sum(r["train_seconds"] for r in later) + sum(
        r.get("eval_seconds") or 0.0 for r in performed
    )
    return {
        "mode": mode,
        "overrides": extra,
        "nodes": nodes,
        "rounds": [
            {k: r.get(k) for k in ("round", "round_seconds", "train_seconds", "eval_seconds")}
            for r in rows
        ],
        "evaluated_rounds": [r["round"] for r in rows if r.get("eval_seconds") is not None],
        "median_round_seconds": statistics.median(r["round_seconds"] for r in later),
        "mean_overhead_seconds": (sum(r["round_seconds"] for r in later) - busy) / len(later),
        "final_accuracy": json.loads((out / "summary.json").read_text())["final_accuracy"],
    }


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
    parser.add_argument("--out", type=Path, default=Path("bench_deploy.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(mode, args.nodes, args.rounds, Path(tmp)) for mode in args.modes]
    print(
        f"Deployment, {args.nodes} SuperNodes, HE (default preset), digits; "
        f"rounds 2..{args.rounds}:"
    )
    print(
        "| configuration | rounds evaluated | round s (median) | overhead s per round "
        "| final accuracy |"
    )
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['mode']} | {', '.join(map(str, r['evaluated_rounds']))} | "
            f"{r['median_round_seconds']:.2f} | {r['mean_overhead_seconds']:.2f} | "
            f"{r['final_accuracy']:.4f} |"
        )
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
