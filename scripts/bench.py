#!/usr/bin/env python3
"""Benchmark every privacy mode on the same task, seed and clients, in one run.

Modes: fedavg (baseline), he with each preset (seeded, the default; compact; nvflare),
secagg (Flower's SecAgg+), and he + DP. Each is a real `flwr run` on a private
simulation SuperLink (started here, stopped by process group at the end); modes are
interleaved when repeated, and the median is reported.

Columns:
- FL-loop time: sum of the round times the ServerApp measured (configure, client work,
  aggregation, evaluation), and its ratio to fedavg and to the *lean reference*: the same
  FedAvg as a plain single-process loop with only Keras and NumPy inside it
  (scripts/bench_reference.py: `keras.Model.fit` / `evaluate` on NumPy arrays, same model,
  data, partitions, epochs, batch size and per-round federated evaluation), run first in
  the same invocation; also rounds 2..R alone, as round 1 is mostly the simulation
  starting its workers (the same work in every mode);
- per client-round: training time and HE time (decrypt + encrypt) as clients report
  them, and the round's wall time divided by its clients (everything included);
- upload: bytes one client sends the server per round, counted on the wire (every
  message's content: updates, SecAgg+ keys and shares, metrics), and its ratio to fedavg;
  download: bytes the server sends one client per round (the global model for fit and
  for evaluate, configs), and its ratio to fedavg;
- final accuracy: federated evaluation after the last round (centralised evaluation is
  switched off in every mode, so every FL loop does the same work);
- peak memory: the largest PSS of the whole simulation process tree (SuperLink,
  ServerApp, Ray and its ClientApp workers; shared pages counted once), sampled twice a
  second.

`--scale` adds two HE runs, each with its own lean reference: 100 simulated clients x 5
rounds, and a ~1M-parameter model (`task.model=wide_mlp`). `--thousand` adds HE runs on
`task=synthetic` at 100 and 1,000 clients (with lean references where every client
trains), 100 of 1,000 per round, and DP-FedAvg over 1,000.

    python scripts/bench.py --out bench.json            # the mode table
    python scripts/bench.py --scale --out bench.json    # plus the scale runs
    python scripts/bench.py --modes fedavg --thousand   # 1,000 clients, HE, DP
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from bench_reference import reference_rounds

from fl_app.ops.local_superlink import LocalSuperLink
from fl_app.ops.procs import tree_pss
from fl_app.run.artifacts import download_per_client, upload_per_client

# mode -> (run-config privacy, Hydra overrides); "fedavg" is FedAvg in the clear
MODES = {
    "fedavg": ("none", ""),
    "he_seeded": ("he", "he=seeded"),
    "he_compact": ("he", "he=compact"),
    "he_nvflare": ("he", "he=nvflare"),
    "secagg": ("secagg", ""),
    "he_dp": ("he", "he=seeded dp.enabled=true"),
}


class PeakMemory:
    """Samples the PSS of a process tree in a thread; `peak` is the largest seen."""

    def __init__(self, root: int, every: float = 0.5) -> None:
        self.root, self.every, self.peak = root, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_pss(self.root))
            self._stop.wait(self.every)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()


def run_once(
    link: LocalSuperLink, out: Path, mode: str, extra: str, clients: int, rounds: int
) -> dict:
    """One real run; its figures from the ServerApp's metrics.json and summary.json."""
    privacy, overrides = MODES[mode]
    overrides = f"{overrides} {extra}".strip()
    run_config = (
        f"privacy='{privacy}' num-server-rounds={rounds} output-dir='{out}' "
        f"overrides='{overrides} federation.num_supernodes={clients} "
        "strategy.centralized_evaluation=false'"
    )
    federation = f"num-supernodes={clients} client-resources-num-cpus=1"
    with PeakMemory(link.process.pid) as memory:
        result = link.submit(run_config, federation, timeout=3600)
    if result.status != "finished:completed":
        tail = result.output[-3000:]
        raise RuntimeError(f"{mode} {overrides}: run ended {result.status}\n{tail}")
    rows = json.loads((out / "metrics.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    fitted = [row for row in rows if row.get("fit_clients")]
    uploads = [upload_per_client(row) for row in fitted]
    downloads = [download_per_client(row) for row in fitted]
    round_seconds = [row["round_seconds"] for row in fitted]
    later = fitted[1:] or fitted
    return {
        "loop_seconds": sum(round_seconds),
        "after_round1_seconds": sum(round_seconds[1:]),
        "round_seconds": round_seconds,
        "train_seconds_per_client_round": statistics.mean(r.get("train_seconds", 0) for r in later),
        "crypto_seconds_per_client_round": statistics.mean(
            r.get("crypto_seconds", 0) for r in later
        ),
        "wall_seconds_per_client_round": statistics.mean(
            r["round_seconds"] / r["fit_sampled"] for r in later
        ),
        "upload_per_client_round": statistics.median(u for u in uploads if u),
        "download_per_client_round": statistics.median(d for d in downloads if d),
        "final_accuracy": summary["final_accuracy"],
        # from the ServerApp's start to round 1's end: workers starting and importing,
        # the example-count query that wakes them, and round 1
        "to_round1_end_seconds": summary["wall_seconds"] - sum(round_seconds[1:]),
        "peak_memory_bytes": memory.peak,
        "model_params": summary["model_params"],
        "epsilon": (summary.get("dp") or {}).get("epsilon"),
        "aggregated_per_round": [row["fit_clients"] for row in fitted],
    }


def median_of(runs: list[dict]) -> dict:
    merged = dict(runs[-1])
    keys = (
        "loop_seconds",
        "after_round1_seconds",
        "peak_memory_bytes",
        "upload_per_client_round",
        "download_per_client_round",
    )
    for key in keys:
        merged[key] = statistics.median(run[key] for run in runs)
    merged["loop_seconds_runs"] = [round(run["loop_seconds"], 2) for run in runs]
    merged["after_round1_seconds_runs"] = [round(run["after_round1_seconds"], 2) for run in runs]
    return merged


def mode_table(results: dict[str, dict], reference: dict) -> list[str]:
    base = results["fedavg"]
    lines = [
        "| mode | FL-loop s | vs fedavg | vs reference | start to round 1's end s "
        "| rounds 2..R vs reference "
        "| upload/client/round | upload vs fedavg | download/client/round | download vs fedavg "
        "| final accuracy | peak memory MB | epsilon |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| lean reference (Keras only) | {reference['loop_seconds']:.1f} | - | 1.00x "
        f"| {reference['round_seconds'][0]:.1f} | 1.00x | - | - | - | - "
        f"| {reference['final_accuracy']:.4f} | - | - |",
    ]
    for mode, r in results.items():
        eps = f"{r['epsilon']:.2f}" if r.get("epsilon") is not None else "-"
        lines.append(
            f"| {mode} | {r['loop_seconds']:.1f} | {r['loop_seconds'] / base['loop_seconds']:.2f}x "
            f"| {r['loop_seconds'] / reference['loop_seconds']:.2f}x "
            f"| {r['to_round1_end_seconds']:.1f} "
            f"| {r['after_round1_seconds'] / reference['after_round1_seconds']:.2f}x "
            f"| {r['upload_per_client_round']:,.0f} "
            f"| {r['upload_per_client_round'] / base['upload_per_client_round']:.2f}x "
            f"| {r['download_per_client_round']:,.0f} "
            f"| {r['download_per_client_round'] / base['download_per_client_round']:.2f}x "
            f"| {r['final_accuracy']:.4f} | {r['peak_memory_bytes'] / 2**20:,.0f} | {eps} |"
        )
    return lines


def client_round_table(results: dict[str, dict], reference: dict) -> list[str]:
    """Seconds per client-round, rounds 2..R: what clients report and the wall share."""
    wall = per_client_round(reference, reference["clients"])
    lines = [
        "| mode | training s | HE s (decrypt + encrypt) | wall s per client-round |",
        "|---|---|---|---|",
        f"| lean reference (Keras only) | {reference['train_seconds_per_client_round']:.3f} "
        f"| - | {wall:.3f} |",
    ]
    for mode, r in results.items():
        lines.append(
            f"| {mode} | {r['train_seconds_per_client_round']:.3f} "
            f"| {r['crypto_seconds_per_client_round']:.3f} "
            f"| {r['wall_seconds_per_client_round']:.3f} |"
        )
    return lines


def scale_table(results: dict[str, dict]) -> list[str]:
    lines = [
        "| run | params | clients x rounds | FL-loop s | lean reference s | vs reference "
        "| rounds 2..R vs reference | upload/client/round | download/client/round "
        "| final accuracy | peak memory MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['model_params']:,} | {r['clients']} x {r['rounds']} "
            f"| {r['loop_seconds']:.1f} | {r['reference_loop_seconds']:.1f} "
            f"| {r['loop_seconds'] / r['reference_loop_seconds']:.2f}x "
            f"| {r['after_round1_seconds'] / r['reference_after_round1_seconds']:.2f}x "
            f"| {r['upload_per_client_round']:,.0f} | {r['download_per_client_round']:,.0f} "
            f"| {r['final_accuracy']:.4f} | {r['peak_memory_bytes'] / 2**20:,.0f} |"
        )
    return lines


# name -> (clients, Hydra overrides) of the scale runs on task=synthetic (HE, 3 rounds)
THOUSAND = {
    "100, all per round": (100, "strategy.fraction_fit=1.0"),
    "1,000, all per round": (1000, "strategy.fraction_fit=1.0"),
    "100 of 1,000 per round": (1000, "strategy.fraction_fit=0.1 strategy.fraction_evaluate=0.1"),
    "1,000, DP-FedAvg": (1000, "strategy.fraction_fit=1.0 dp.enabled=true dp.noise_multiplier=1.2"),
}


def thousand_clients(link: LocalSuperLink, tmp: Path, seed: int) -> dict:
    """task=synthetic under HE, 3 rounds, at 100 and 1,000 clients; the lean reference
    beside the runs that train every client."""
    results = {}
    for index, (name, (clients, extra)) in enumerate(THOUSAND.items()):
        overrides = f"task=synthetic seed={seed} {extra}"
        result = run_once(link, tmp / f"thousand_{index}", "he_seeded", overrides, clients, 3)
        result["clients"] = clients
        if "all per round" in name:
            result["reference"] = reference_rounds(overrides.split(), clients, 3)
        results[name] = result
        print(f"{name}: {result['loop_seconds']:.0f}s", flush=True)
    return results


def per_client_round(r: dict, clients: int) -> float:
    """Wall seconds per client-round over rounds 2..R of the lean reference `r`."""
    return r["after_round1_seconds"] / max(1, len(r["round_seconds"]) - 1) / clients


def thousand_table(results: dict[str, dict]) -> list[str]:
    lines = [
        "| task=synthetic, 3 rounds, HE seeded | FL-loop s | lean reference s | vs reference "
        "| start to round 1's end s | wall s per client-round (reference) "
        "| training s per client-round "
        "(reference) | final accuracy | epsilon | peak memory MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        eps = f"{r['epsilon']:.2f}" if r.get("epsilon") is not None else "-"
        ref = r.get("reference")
        versus = (
            (f"{ref['loop_seconds']:.1f}", f"{r['loop_seconds'] / ref['loop_seconds']:.2f}x",
             f" ({per_client_round(ref, r['clients']):.3f})",
             f" ({ref['train_seconds_per_client_round']:.3f})")
            if ref else ("-", "-", "", "")
        )  # fmt: skip
        lines.append(
            f"| {name} | {r['loop_seconds']:.1f} | {versus[0]} | {versus[1]} "
            f"| {r['to_round1_end_seconds']:.1f} "
            f"| {r['wall_seconds_per_client_round']:.3f}{versus[2]} "
            f"| {r['train_seconds_per_client_round']:.3f}{versus[3]} "
            f"| {r['final_accuracy']:.4f} | {eps} | {r['peak_memory_bytes'] / 2**20:,.0f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="digits")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=1, help="interleaved runs per mode")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset")
    parser.add_argument("--scale", action="store_true", help="add the scale runs")
    parser.add_argument(
        "--thousand", action="store_true", help="add 1,000-client HE runs on task=synthetic"
    )
    parser.add_argument("--out", type=Path, default=Path("bench.json"))
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",")]
    unknown = sorted(set(modes) - set(MODES))
    if unknown or "fedavg" not in modes:
        parser.error(f"--modes {unknown or modes}: allowed a subset of {list(MODES)} with fedavg")

    common = f"task={args.task} seed={args.seed}"
    report: dict = {"settings": vars(args) | {"out": str(args.out)}, "modes": {}, "scale": {}}
    reference = reference_rounds(common.split(), args.clients, args.rounds)
    report["reference"] = reference | {"clients": args.clients}
    print(f"reference: {reference['loop_seconds']:.1f}s", flush=True)
    with tempfile.TemporaryDirectory() as tmp, LocalSuperLink(Path(tmp) / "home") as link:
        runs: dict[str, list[dict]] = {mode: [] for mode in modes}
        for repeat in range(args.repeats):
            for mode in modes:
                out = Path(tmp) / f"{mode}_{repeat}"
                started = time.monotonic()
                runs[mode].append(run_once(link, out, mode, common, args.clients, args.rounds))
                took = time.monotonic() - started
                print(f"{mode} (repeat {repeat + 1}): {took:.0f}s", flush=True)
        report["modes"] = {mode: median_of(runs[mode]) for mode in modes}
        report["runs"] = runs
        if args.scale:
            for name, extra, clients, rounds in (
                ("he_100_clients", common, 100, 5),
                ("he_1M_params", f"{common} task.model=wide_mlp", args.clients, args.rounds),
            ):
                result = run_once(link, Path(tmp) / name, "he_seeded", extra, clients, rounds)
                plain = reference_rounds(extra.split(), clients, rounds)
                report["scale"][name] = result | {
                    "clients": clients,
                    "rounds": rounds,
                    "reference_loop_seconds": plain["loop_seconds"],
                    "reference_after_round1_seconds": plain["after_round1_seconds"],
                }
                print(f"{name}: done", flush=True)

        if args.thousand:
            report["thousand"] = thousand_clients(link, Path(tmp), args.seed)

    lines = [
        f"{args.task}, {args.clients} clients, {args.rounds} rounds, seed {args.seed}, "
        f"median of {args.repeats} interleaved run(s) per mode",
        "",
        *mode_table(report["modes"], report["reference"]),
        "",
        *client_round_table(report["modes"], report["reference"]),
    ]
    if report["scale"]:
        lines += ["", *scale_table(report["scale"])]
    if report.get("thousand"):
        thousand = report["thousand"]
        flat = (
            thousand["1,000, all per round"]["wall_seconds_per_client_round"]
            / thousand["100, all per round"]["wall_seconds_per_client_round"]
        )
        report["thousand_vs_hundred_per_client_round"] = flat
        lines += ["", *thousand_table(thousand), "",
                  f"wall per client-round, 1,000 / 100 clients: {flat:.2f}x"]  # fmt: skip
    print("\n".join(lines))
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
