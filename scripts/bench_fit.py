#!/usr/bin/env python3
"""What one client's fit costs: fl_app's `train` against Keras alone, interleaved.

On one holder's partition of the task (default: digits, 10 partitions, the task's epochs
and batch size), times, per call and interleaved over `--repeats` rounds of `--fits`:

- `keras fit + set_random_seed`: what `fl_app.ml.models.train` did until issue 25,
  written out with Keras alone (`keras.utils.set_random_seed(seed)`, then
  `Model.fit(x, y, shuffle=True)` on the NumPy arrays);
- `keras fit`: `Model.fit` on the NumPy arrays without any seeding (the lean
  reference's fit);
- `fl_app train`: `fl_app.ml.models.train` as it is now;
- `keras evaluate` and `fl_app evaluate`: the same for one evaluation of the test split.

    python scripts/bench_fit.py --out bench_fit.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import keras

from fl_app.config import compose_config
from fl_app.fl.factory import new_model, node_data
from fl_app.ml.models import evaluate, targets_of, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits")
    parser.add_argument("--partitions", type=int, default=10)
    parser.add_argument("--fits", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench_fit.json"))
    args = parser.parse_args()
    cfg = compose_config([f"task={args.task}", f"federation.num_supernodes={args.partitions}"])
    data, seed = node_data(cfg, {"partition-id": 0, "num-partitions": args.partitions})
    net = new_model(cfg)
    epochs, batch = cfg.train.local_epochs, cfg.train.batch_size
    x, y = data.train.x, targets_of(net, data.train)
    x_test, y_test = data.test.x, targets_of(net, data.test)

    def reseeded_fit() -> None:
        keras.utils.set_random_seed(seed)
        net.fit(x, y, epochs=epochs, batch_size=batch, shuffle=True, verbose=0)

    calls = {
        "keras fit + set_random_seed (train before)": reseeded_fit,
        "keras fit": lambda: net.fit(x, y, epochs=epochs, batch_size=batch, verbose=0),
        "fl_app train": lambda: train(net, data.train, epochs=epochs, batch_size=batch, seed=seed),
        "keras evaluate": lambda: net.evaluate(x_test, y_test, batch_size=batch, verbose=0),
        "fl_app evaluate": lambda: evaluate(net, data.test, batch_size=batch),
    }
    for call in calls.values():  # trace once
        call()
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.repeats):
        for name, call in calls.items():
            started = time.perf_counter()
            for _ in range(args.fits):
                call()
            seconds[name].append((time.perf_counter() - started) / args.fits)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    lines = [
        f"{args.task}, partition 0 of {args.partitions}: {len(data.train)} training rows, "
        f"{len(data.test)} test rows, {epochs} epochs, batch {batch}; median of "
        f"{args.repeats} interleaved runs of {args.fits} calls",
        "",
        "| call | ms per call | vs Keras alone |",
        "|---|---|---|",
    ]
    for name, value in medians.items():
        base = medians["keras fit" if "fit" in name or "train" in name else "keras evaluate"]
        lines.append(f"| {name} | {value * 1000:.0f} | {value / base:.2f}x |")
    print("\n".join(lines))
    report = {"settings": vars(args) | {"out": str(args.out)}, "seconds": seconds,
              "median": medians}  # fmt: skip
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
