#!/usr/bin/env python3
"""Per-round overhead of a real deployment: cold (a new ClientApp process per message,
Flower's default) vs warm (`fl-app warm-superexec` forks each ClientApp from a process
that has TensorFlow imported).

For each mode: start a local TLS + node-auth federation (`fl_app.ops.federation.up`), run HE
training, and per round compute overhead = round wall time - mean local training time
- mean local evaluation time (both reported by the clients). Rounds after the first are
summarised (round 1 also learns example counts). Prints a table and writes JSON:

    python scripts/bench_deploy.py --nodes 2 --rounds 4 --out bench_deploy.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

from fl_app.ops import federation as deploy
from fl_app.ops.flower import FlowerCLI


def measure(mode: str, nodes: int, rounds: int, workdir: Path) -> dict:
    os.environ["FLWR_HOME"] = str(workdir / f"flwr_home_{mode}")
    fed = workdir / f"fed_{mode}"
    info = deploy.up(fed, num_nodes=nodes, task="digits", warm=mode == "warm")
    out = workdir / f"run_{mode}"
    try:
        overrides = (
            f"federation=deployment federation.num_supernodes={nodes} task=digits "
            f"he.public_context={info['public_context']}"
        )
        result = FlowerCLI(dict(os.environ), deploy.CONNECTION).submit(
            f"num-server-rounds={rounds} output-dir='{out}' overrides='{overrides}'", timeout=1800
        )
        if result.status != "finished:completed":
            raise RuntimeError(f"{mode} run ended {result.status}:\n{result.output[-2000:]}")
    finally:
        deploy.down(fed)
    rows = json.loads((out / "metrics.json").read_text())
    per_round = [
        {
            "round": r["round"],
            "round_seconds": r["round_seconds"],
            "train_seconds": r["train_seconds"],
            "eval_seconds": r["eval_seconds"],
            "overhead_seconds": r["round_seconds"] - r["train_seconds"] - r["eval_seconds"],
        }
        for r in rows
    ]
    later = per_round[1:]
    return {
        "mode": mode,
        "nodes": nodes,
        "rounds": per_round,
        "median_round_seconds": statistics.median(r["round_seconds"] for r in later),
        "median_overhead_seconds": statistics.median(r["overhead_seconds"] for r in later),
        "final_accuracy": json.loads((out / "summary.json").read_text())["final_accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--modes", nargs="+", default=["cold", "warm"], choices=["cold", "warm"])
    parser.add_argument("--out", type=Path, default=Path("bench_deploy.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(mode, args.nodes, args.rounds, Path(tmp)) for mode in args.modes]
    print(f"Deployment, {args.nodes} SuperNodes, HE (compact), digits; rounds 2..{args.rounds}:")
    print("| mode | round s (median) | overhead s per round (median) | final accuracy |")
    print("|---|---|---|---|")
    for r in results:
        print(
            f"| {r['mode']} | {r['median_round_seconds']:.2f} | "
            f"{r['median_overhead_seconds']:.2f} | {r['final_accuracy']:.4f} |"
        )
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
