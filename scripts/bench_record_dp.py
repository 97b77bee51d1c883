#!/usr/bin/env python3
"""Record-level DP (DP-SGD in each holder's training) against no DP, under HE.

For each task and each target ε (δ = 1e-5 per holder) one real simulation run with
`dp.enabled=true dp.level=record dp.target_epsilon=ε` (each holder's noise calibrated
for the planned rounds), and one without DP, same seed, clients and hyperparameters.
Reports the task's primary metric after the last round, the largest ε any holder spent,
the noise multipliers used, and the cost: the clients' mean local training time per
round (rounds 2..R) with DP-SGD over the same hyperparameters without DP (a run kept
for timing only: plain SGD at DP-SGD's step size is not how one trains without noise).
Prints a table, writes JSON:

    python scripts/bench_record_dp.py --out bench_record_dp.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from fl_app.ops.local_superlink import LocalSuperLink

# task -> (rounds, overrides of every run, overrides of the DP-SGD runs only). The runs
# without DP keep the task's defaults (Adam), which is what trains best without noise;
# DP-SGD trains best with plain SGD, a larger batch (less noise per example) and a large
# step: clipping bounds every per-example gradient, so the step cannot diverge.
TASKS = {
    "digits": (
        10,
        "task=digits",
        "train.optimizer=sgd train.learning_rate=1.0 train.batch_size=64",
    ),
    "breast_cancer": (
        10,
        "task=breast_cancer",
        "train.optimizer=sgd train.learning_rate=0.5 train.batch_size=32",
    ),
    "diabetes": (
        10,
        "task=diabetes train.learning_rate=0.01",
        "train.optimizer=sgd train.learning_rate=0.1 train.batch_size=32",
    ),
}
EPSILONS = (1.0, 3.0, 8.0)


def run(link: LocalSuperLink, out: Path, rounds: int, overrides: str, clients: int) -> dict:
    result = link.submit(
        f"privacy='he' num-server-rounds={rounds} output-dir='{out}' "
        f"overrides='federation.num_supernodes={clients} {overrides}'",
        f"num-supernodes={clients} client-resources-num-cpus=1",
        timeout=3600,
    )
    if result.status != "finished:completed":
        raise RuntimeError(f"{overrides}: run ended {result.status}\n{result.output[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    rows = [r for r in json.loads((out / "metrics.json").read_text()) if r.get("fit_clients")]
    dp = summary.get("dp") or {}
    noise = sorted(set((dp.get("per_holder_noise_multiplier") or {}).values()))
    return {
        "overrides": overrides,
        "rounds": rounds,
        "primary": summary.get("primary_metric"),
        "final": summary.get("final_metric"),
        "epsilon_max": dp.get("epsilon"),
        "noise_multipliers": [round(v, 3) for v in noise],
        "train_seconds": statistics.mean(r["train_seconds"] for r in rows[1:] or rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_record_dp.json"))
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--extra", default="", help="Hydra overrides added to every run")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp, LocalSuperLink(Path(tmp) / "home") as link:
        for task in args.tasks.split(","):
            rounds, base, private = TASKS[task]
            base = f"{base} {args.extra}".strip()
            plain = run(link, Path(tmp) / f"{task}_plain", rounds, base, args.clients)
            timing = run(
                link, Path(tmp) / f"{task}_timing", rounds, f"{base} {private}", args.clients
            )
            rows = [{"task": task, "epsilon_target": None, **plain}]
            for eps in EPSILONS:
                dp = f"{base} {private} dp.enabled=true dp.level=record dp.target_epsilon={eps}"
                result = run(link, Path(tmp) / f"{task}_{eps}", rounds, dp, args.clients)
                rows.append({"task": task, "epsilon_target": eps, **result})
            for row in rows:
                row["cost_vs_plain"] = row["train_seconds"] / timing["train_seconds"]
            rows[0]["cost_vs_plain"] = None
            results.extend(rows)
            print(f"{task}: done", flush=True)
    print(f"\n{args.clients} holders, HE seeded, delta = 1e-5 per holder\n")
    print(
        "| task | target ε | rounds | metric | final | ε spent (largest holder) "
        "| noise multipliers | training time / without DP | overrides |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        eps = "no DP" if r["epsilon_target"] is None else f"{r['epsilon_target']:g}"
        spent = "-" if r["epsilon_max"] is None else f"{r['epsilon_max']:.2f}"
        noise = ", ".join(map(str, r["noise_multipliers"])) or "-"
        cost = "-" if r["cost_vs_plain"] is None else f"{r['cost_vs_plain']:.2f}x"
        print(
            f"| {r['task']} | {eps} | {r['rounds']} | {r['primary']} | {r['final']:.4f} "
            f"| {spent} | {noise} | {cost} | `{r['overrides']}` |"
        )
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
