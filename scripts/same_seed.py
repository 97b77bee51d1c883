#!/usr/bin/env python3
"""Same seed, same numbers: every bundled task under every privacy mode, per round.

One real simulation run (`flwr run` on a local SuperLink) per task and mode, 3 clients,
2 rounds, the task's defaults otherwise. Writes each run's per-round metrics (every
number except times and byte counts) to JSON; `--compare OLD.json` says, run by run,
whether they are identical to an earlier file's (before and after a refactor):

    python scripts/same_seed.py --out after.json --compare before.json

A mode is `label=run config fragment`, so the script also runs code that named its
modes differently (before the `privacy=` group: `--modes none=strategy=fedavg ...`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from fl_app.ops.local_superlink import LocalSuperLink

TASKS = ("digits", "breast_cancer", "diabetes")  # synthetic: --tasks synthetic (slow)
MODES = ("none=privacy=none", "he=privacy=he", "secagg=privacy=secagg")
CLIENTS = 3
ROUNDS = 2
# Numbers that depend on the machine or on the wire format, not on the learning.
REPO = Path(__file__).resolve().parent.parent  # fl_app's own app (pyproject.toml)
UNSTABLE = ("seconds", "bytes", "dropped")


def per_round(metrics: list[dict]) -> list[dict]:
    """The learning's numbers of each round (no times, no sizes)."""
    return [
        {k: v for k, v in row.items() if not any(word in k for word in UNSTABLE)} for row in metrics
    ]


def run(link: LocalSuperLink, out: Path, task: str, mode: str, app: Path) -> list[dict]:
    key, _, value = mode.split("=", 1)[1].partition("=")
    result = link.submit(
        f"{key}='{value}' num-server-rounds={ROUNDS} output-dir='{out}' "
        f"overrides='task={task} federation.num_supernodes={CLIENTS}'",
        f"num-supernodes={CLIENTS} client-resources-num-cpus=1",
        timeout=1800,
        app_dir=app,
    )
    if result.status != "finished:completed":
        raise RuntimeError(f"{task} {mode}: run ended {result.status}\n{result.output[-3000:]}")
    return per_round(json.loads((out / "metrics.json").read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("same_seed.json"))
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--modes", nargs="+", default=list(MODES))
    parser.add_argument("--app", type=Path, default=REPO, help="the Flower app to run")
    parser.add_argument("--compare", type=Path, help="an earlier --out file")
    args = parser.parse_args()
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp, LocalSuperLink(Path(tmp) / "home") as link:
        for task in args.tasks.split(","):
            for mode in args.modes:
                label = mode.split("=", 1)[0]
                results[f"{task}/{label}"] = run(
                    link, Path(tmp) / task / label, task, mode, args.app
                )
                last = results[f"{task}/{label}"][-1]
                shown = {k: v for k, v in last.items() if k.startswith(("eval_", "train_"))}
                print(f"{task:14} {label:7} round {last.get('round')}: {shown}", flush=True)
                args.out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    if args.compare:
        before = json.loads(args.compare.read_text())
        for name, rounds in results.items():
            same = before.get(name) == rounds
            print(f"{name:24} {'identical' if same else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
