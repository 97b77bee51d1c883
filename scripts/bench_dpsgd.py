#!/usr/bin/env python3
"""What a DP-SGD step costs against a plain Keras step, on one holder's data, interleaved.

On partition 0 of `--partitions` of the task (default: digits, 2 partitions: 575
training rows; the task's model, optimizer, batch size and local epochs: what one
client's fit trains), times each way of training for those epochs, interleaved over
`--repeats` rounds, each on a model of its own built from the config:

- `keras fit`: `Model.fit(x, y, epochs=..., batch_size=...)` on the NumPy arrays;
- `DP-SGD, Jacobian`: `DPSGD(net, per_layer=False).train(...)`, every variable's
  per-example gradient from one vectorised Jacobian (the path before per-layer norms);
- `DP-SGD, per layer`: `DPSGD(net).train(...)`, the default.

Both DP-SGD runs use clip 1.0 and noise multiplier 1.0 (the noise does not change the
work). A step's time is the call's time over its steps: ceil(n / batch) per epoch for
fit, round(n / batch) Poisson steps (padded to `capacity_for(batch)` rows) for DP-SGD.
The table gives the median and the fastest of the repeats (on a busy machine the
fastest is the closer to the work itself).

    python scripts/bench_dpsgd.py --out bench_dpsgd.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from fl_app.config import compose_config
from fl_app.fl.factory import new_model, node_data
from fl_app.ml.dpsgd import DPSGD, ClipAndNoise, capacity_for, steps_per_epoch
from fl_app.ml.models import targets_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits")
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench_dpsgd.json"))
    args = parser.parse_args()
    cfg = compose_config([f"task={args.task}", f"federation.num_supernodes={args.partitions}"])
    data, _ = node_data(cfg, {"partition-id": 0, "num-partitions": args.partitions})
    batch, epochs = int(cfg.train.batch_size), int(cfg.train.local_epochs)
    x, y = data.train.x, targets_of(new_model(cfg), data.train)
    settings = ClipAndNoise(clip_norm=1.0, noise_multiplier=1.0)
    plain, jacobian = new_model(cfg), DPSGD(new_model(cfg), per_layer=False)
    per_layer = DPSGD(new_model(cfg))
    dp_steps = epochs * steps_per_epoch(len(y), batch)
    calls: dict[str, tuple[Callable[[], object], int]] = {
        "keras fit": (
            lambda: plain.fit(x, y, epochs=epochs, batch_size=batch, verbose=0),
            epochs * math.ceil(len(y) / batch),
        ),
        "DP-SGD, Jacobian": (
            lambda: jacobian.train(x, y, settings, epochs=epochs, batch_size=batch),
            dp_steps,
        ),
        "DP-SGD, per layer": (
            lambda: per_layer.train(x, y, settings, epochs=epochs, batch_size=batch),
            dp_steps,
        ),
    }
    for call, _ in calls.values():  # trace once
        call()
    step_ms: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.repeats):
        for name, (call, steps) in calls.items():
            started = time.perf_counter()
            call()
            step_ms[name].append((time.perf_counter() - started) * 1000 / steps)
    medians = {name: statistics.median(values) for name, values in step_ms.items()}
    fastest = {name: min(values) for name, values in step_ms.items()}
    lines = [
        f"{args.task} ({cfg.task.model}), partition 0 of {args.partitions}: {len(y)} training "
        f"rows, batch {batch} (DP-SGD padded to {capacity_for(batch)}), {epochs} epochs, "
        f"{cfg.train.optimizer}; {args.repeats} interleaved repeats",
        "",
        "| training | ms per step, median | vs keras fit | ms per step, fastest | vs keras fit |",
        "|---|---|---|---|---|",
    ]
    for name in calls:
        lines.append(
            f"| {name} | {medians[name]:.2f} | {medians[name] / medians['keras fit']:.2f}x "
            f"| {fastest[name]:.2f} | {fastest[name] / fastest['keras fit']:.2f}x |"
        )
    print("\n".join(lines))
    report = {
        "settings": vars(args)
        | {"out": str(args.out), "rows": len(y), "batch_size": batch, "epochs": epochs},
        "step_ms": step_ms,
        "median_ms": medians,
        "fastest_ms": fastest,
        "median_vs_keras_fit": {name: v / medians["keras fit"] for name, v in medians.items()},
        "fastest_vs_keras_fit": {name: v / fastest["keras fit"] for name, v in fastest.items()},
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
