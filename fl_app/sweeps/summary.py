"""Summaries of a sweep directory: one row per job, tables and plots to pick a mode."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
from omegaconf import OmegaConf

from fl_app.run.artifacts import upload_per_client

COLUMNS = (
    "job",
    "overrides",
    "status",
    "mode",
    "alpha",
    "metric",
    "final_metric",
    "final_accuracy",
    "epsilon",
    "rounds",
    "wall_seconds",
    "bytes_up_total",
    "bytes_down_total",
    "upload_per_client_round",
    "expansion",
    "error",
)


def read_json(path: Path) -> Any:
    """A JSON file's content, or {} when the file does not exist (a failed job)."""
    return json.loads(path.read_text()) if path.exists() else {}


def _mode(choices: dict[str, Any], config: dict[str, Any]) -> str:
    """A job's label: its privacy setup (`+setup=...`, or the privacy mode with its HE
    preset), the algorithm when it is not FedAvg, and DP when on."""
    privacy = choices.get("privacy") or config.get("privacy", {}).get("name", "?")
    mode = f"he_{choices.get('he', 'seeded')}" if privacy == "he" else str(privacy)
    mode = str(choices.get("setup") or mode)
    strategy = choices.get("strategy") or config.get("strategy", {}).get("name", "fedavg")
    mode += "" if strategy == "fedavg" else f"/{strategy}"
    dp = config.get("dp", {})
    if not dp.get("enabled") or "dp" in mode:
        return mode
    return f"{mode}+dp" if dp.get("level", "client") == "client" else f"{mode}+record_dp"


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job found under `sweep_dir` (its `job.json` and run artifacts)."""
    rows = []
    jobs = [(path, read_json(path)) for path in sweep_dir.rglob("job.json")]
    for job_file, job in sorted(jobs, key=lambda item: item[1].get("job", 0)):
        run_dir = job_file.parent / "run"
        summary = read_json(run_dir / "summary.json")
        metrics = read_json(run_dir / "metrics.json") or []
        config_path = run_dir / "config.yaml"
        config = OmegaConf.to_container(OmegaConf.load(config_path)) if config_path.exists() else {}
        fitted = [m for m in metrics if m.get("fit_clients")]
        per_client = upload_per_client(fitted[-1]) if fitted else None
        params = summary.get("model_params")
        partition = config.get("partition", {})
        metric = summary.get("primary_metric", "accuracy")  # older runs: accuracy
        rows.append(
            {
                "job": job.get("job"),
                "overrides": job.get("overrides", ""),
                "status": job.get("status", "unknown"),
                "mode": _mode(job.get("choices", {}), config),
                "alpha": partition.get("alpha") if partition.get("name") == "dirichlet" else None,
                "metric": metric,
                "final_metric": summary.get("final_metric", summary.get("final_accuracy")),
                "higher_is_better": summary.get("higher_is_better", True),
                "final_accuracy": summary.get("final_accuracy"),
                "epsilon": (summary.get("dp") or {}).get("epsilon"),
                "rounds": summary.get("rounds_completed"),
                "wall_seconds": summary.get("wall_seconds"),
                "bytes_up_total": summary.get("bytes_up_total"),
                "bytes_down_total": summary.get("bytes_down_total"),
                "upload_per_client_round": per_client,
                "expansion": per_client / (4 * params) if per_client and params else None,
                "error": job.get("error", ""),
                "metric_per_round": [
                    (m["round"], m[f"eval_{metric}"])
                    for m in metrics
                    if m.get(f"eval_{metric}") is not None
                ],
            }
        )
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if value < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_tables(rows: list[dict[str, Any]], sweep_dir: Path) -> list[Path]:
    csv_path, md_path = sweep_dir / "summary.csv", sweep_dir / "summary.md"
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    shown = [c for c in COLUMNS if c != "error"]
    lines = [
        f"# Sweep summary: {sweep_dir}",
        "",
        "| " + " | ".join(shown) + " |",
        "|" + "---|" * len(shown),
        *("| " + " | ".join(_cell(row[c]) for c in shown) + " |" for row in rows),
    ]
    lines += glance(rows)
    failed = [row for row in rows if row["status"] != "completed"]
    if failed:
        lines += ["", "## Failed jobs", ""]
        lines += [f"- job {row['job']} ({row['overrides']}): {row['error']}" for row in failed]
    lines += [
        "",
        "upload_per_client_round: bytes one client sends in the last round, counted on "
        "the wire (updates, SecAgg+ keys and shares, metrics); "
        "expansion: that over the float32 size of the model.",
    ]
    md_path.write_text("\n".join(lines) + "\n")
    return [csv_path, md_path]


def glance(rows: list[dict[str, Any]]) -> list[str]:
    """One line per completed job, relative to the best of the sweep: pick a mode here."""
    done = [r for r in rows if r["status"] == "completed" and r["final_metric"] is not None]
    if not done:
        return []
    higher = done[0]["higher_is_better"]
    best = (max if higher else min)(r["final_metric"] for r in done)
    fastest = min(r["wall_seconds"] for r in done)
    cheapest = min(r["upload_per_client_round"] or float("inf") for r in done)
    lines = ["", "## At a glance", ""]
    for r in done:
        label = r["mode"] if r["alpha"] is None else f"{r['mode']}, alpha {r['alpha']}"
        upload = r["upload_per_client_round"]
        upload_text = f"{upload / cheapest:.2f}x the smallest" if upload else "n/a"
        lines.append(
            f"- job {r['job']} ({label}): {r['metric']} {r['final_metric']:.4f} "
            f"({r['final_metric'] - best:+.4f} vs the best), "
            f"time {r['wall_seconds'] / fastest:.2f}x the fastest, upload {upload_text}"
        )
    return lines


def write_plots(rows: list[dict[str, Any]], sweep_dir: Path) -> list[Path]:
    paths = []
    done = [row for row in rows if row["metric_per_round"]]
    if done:
        fig, ax = plt.subplots(figsize=(8, 5))
        for row in done:
            xs, ys = zip(*row["metric_per_round"], strict=True)
            ax.plot(xs, ys, marker="o", label=f"{row['job']}: {row['overrides'] or 'defaults'}")
        metric = done[0]["metric"]
        ax.set(xlabel="round", ylabel=f"federated eval {metric}", title=f"{metric} per round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(sweep_dir / "accuracy_per_round.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    skewed = [r for r in rows if r["alpha"] is not None and r["final_metric"] is not None]
    if len({r["alpha"] for r in skewed}) > 1:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for mode in sorted({r["mode"] for r in skewed}):
            points = sorted((r["alpha"], r["final_metric"]) for r in skewed if r["mode"] == mode)
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", label=mode)
        metric = skewed[0]["metric"]
        ax.set(xscale="log", xlabel="Dirichlet alpha (small = skewed)", ylabel=f"final {metric}")
        ax.set_title(f"Final {metric} vs label skew")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        paths.append(sweep_dir / "accuracy_vs_alpha.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths


def summarize_sweep(sweep_dir: Path) -> list[Path]:
    """Write summary.csv, summary.md and the plots into `sweep_dir`; return their paths."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ValueError(f"PATH={str(sweep_dir)!r} is invalid: not a directory")
    rows = collect(sweep_dir)
    if not rows:
        raise ValueError(f"no fl-experiment jobs (job.json) under {sweep_dir}")
    return write_tables(rows, sweep_dir) + write_plots(rows, sweep_dir)
