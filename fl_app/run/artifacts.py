"""The files one run leaves behind: metrics, plot, summary (all from its RunHistory)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from fl_app.config import ModeFacts
from fl_app.config.schema import AppConfig
from fl_app.crypto.integers import from_digit_sums
from fl_app.ml.statistics import raw_input_model
from fl_app.privacy.report import privacy_report
from fl_app.run.checkpoint import load_statistics
from fl_app.run.history import RunHistory
from fl_app.run.state import RunState

MODEL_NAME = "model.keras"

# Columns of metrics.csv, in order; a round lacks the ones its mode does not produce.
COLUMNS = (
    "round",
    "fit_clients",
    "fit_failures",
    "fit_sampled",
    "fit_available",
    "aggregated",
    "train_loss",
    "train_accuracy",
    "train_seconds",
    "crypto_seconds",
    "eval_clients",
    "eval_failures",
    "eval_loss",
    "eval_accuracy",
    "eval_seconds",
    "centralized_loss",
    "centralized_accuracy",
    "bytes_up",
    "bytes_down",
    "wire_bytes_up",
    "wire_bytes_down",
    "round_seconds",
)


def write_metrics(history: RunHistory, out_dir: Path) -> None:
    """metrics.csv and metrics.json, one row per round."""
    rows = history.rows()
    (out_dir / "metrics.json").write_text(json.dumps(rows, indent=2))
    # the task's own metrics (auc, mae, ...) after the standard columns
    scalars = {key for row in rows for key, value in row.items() if not isinstance(value, dict)}
    extra = sorted(scalars - set(COLUMNS))  # (per-holder values stay in metrics.json)
    with (out_dir / "metrics.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*COLUMNS, *extra], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_plot(history: RunHistory, path: Path, title: str, metric: str = "accuracy") -> None:
    """Loss and the task's primary `metric` per round, for every kind of evaluation run."""
    rows = history.rows()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    series = (("train", "local training"), ("eval", "federated eval"))
    series += (("centralized", "centralised eval"),)
    for prefix, label in series:
        for ax, name in ((ax_loss, "loss"), (ax_acc, metric)):
            points = [
                (row["round"], row[f"{prefix}_{name}"])
                for row in rows
                if row.get(f"{prefix}_{name}") is not None
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", label=label)
    for ax, name in ((ax_loss, "loss"), (ax_acc, metric)):
        ax.set_xlabel("round")
        ax.set_ylabel(name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def upload_per_client(row: dict[str, Any]) -> float | None:
    """Bytes one client sent the server in a round (`row` of metrics.json).

    Measured on the wire (every message's content: updates, SecAgg+ keys and shares,
    metrics) when the run counted it, else what reached the strategy.
    """
    if row.get("wire_bytes_up") and row.get("fit_sampled"):
        return row["wire_bytes_up"] / row["fit_sampled"]
    if row.get("bytes_up") and row.get("fit_clients"):
        return row["bytes_up"] / row["fit_clients"]
    return None


def download_per_client(row: dict[str, Any]) -> float | None:
    """Bytes the server sent one sampled client in a round (fit and, when the round
    evaluates, evaluate: each carries the global model), on the wire when counted."""
    down = row.get("wire_bytes_down") or row.get("bytes_down")
    return down / row["fit_sampled"] if down and row.get("fit_sampled") else None


def run_summary(
    history: RunHistory, *, primary_metric: str = "accuracy", **run_facts: Any
) -> dict[str, Any]:
    """The run summary: final metrics and byte totals plus the facts given."""
    return {
        **run_facts,
        "primary_metric": primary_metric,
        "final_metric": history.last(f"eval_{primary_metric}"),
        "final_metric_combined": _combined(history, primary_metric),
        "final_accuracy": history.last("eval_accuracy"),
        "final_loss": history.last("eval_loss"),
        "final_centralized_accuracy": history.last("centralized_accuracy"),
        "final_centralized_loss": history.last("centralized_loss"),
        "bytes_up_total": int(history.total("bytes_up")),
        "bytes_down_total": int(history.total("bytes_down")),
        "wire_bytes_up_total": int(history.total("wire_bytes_up")),
        "wire_bytes_down_total": int(history.total("wire_bytes_down")),
    }


def _combined(history: RunHistory, metric: str) -> str | None:
    """How the last evaluation's `metric` was combined across clients: "pooled" (from
    the clients' summed metric states: the value over their pooled test data) or "mean
    of clients" (weighted by test examples)."""
    rows = [row for row in history.rows() if row.get(f"eval_{metric}") is not None]
    if not rows:
        return None
    means = str(rows[-1].get("eval_mean_of_clients") or "").split(",")
    return "mean of clients" if metric in means else "pooled"


def _statistics_summary(cfg: AppConfig, run_dir: Path) -> dict[str, Any] | None:
    """How `standardize` was scaled: federated (how many holders, whether encrypted),
    public, or each holder's own; None without standardisation."""
    if cfg.task.preprocess != "standardize":
        return None
    if (saved := load_statistics(run_dir)) is not None:
        return {"source": "federated", "holders": saved["holders"], "encrypted": saved["encrypted"]}
    return {"source": "public" if cfg.task.preprocess_stats else "holder"}


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def aggregated_rounds(history: RunHistory) -> list[int]:
    """The rounds whose aggregate became the global model (older runs: rounds with fit
    results, as they recorded no `aggregated`)."""
    return [
        row["round"]
        for row in history.rows()
        if (row["aggregated"] if "aggregated" in row else bool(row.get("fit_clients")))
    ]


def _save_final_model(state: RunState, net: Any, run_dir: Path, trained: bool) -> str | None:
    """model.keras of a plaintext run; an encrypted one only says how to decrypt it;
    none for a run that never aggregated (its model is the untrained initial one)."""
    if not trained or state.encrypted:
        return None  # encrypted: the end-of-run summary says how to decrypt it
    net.set_weights(state.weights)
    if (statistics := load_statistics(run_dir)) is not None:  # takes raw inputs
        summed = from_digit_sums(np.frombuffer(statistics["total"], dtype="<i8"))
        net = raw_input_model(net, summed)
    net.save(run_dir / MODEL_NAME)
    return str(run_dir / MODEL_NAME)


def write_artifacts(
    cfg: AppConfig, mode: ModeFacts, run_dir: Path, state: RunState, *, net: Any, run_id: int
) -> dict[str, Any]:
    """The final model (plaintext only), metrics, plot and summary.json of a finished run.

    `net` is the run's Keras model (anything with `set_weights`, `save`, `count_params`).
    """
    history = state.history
    write_metrics(history, run_dir)
    primary = cfg.task.objective.primary
    title = f"{cfg.task.name} / {cfg.privacy.name} / {cfg.strategy.name}"
    write_plot(history, run_dir / "metrics.png", title, primary)
    aggregated = aggregated_rounds(history)
    final_model = _save_final_model(state, net, run_dir, trained=bool(aggregated))
    attempted = [row["round"] for row in history.rows() if "fit_clients" in row]
    summary = run_summary(
        history,
        privacy=cfg.privacy.name,
        strategy=cfg.strategy.name,
        task=cfg.task.name,
        partition=cfg.partition.name,
        run_id=run_id,
        rounds_completed=len(aggregated),  # rounds whose aggregate was taken
        rounds_run=max(attempted, default=0),
        rounds_not_aggregated=sorted(set(attempted) - set(aggregated)),
        # rounds whose aggregate most clients refused to use (not the global model)
        rounds_refused=[row["round"] for row in history.rows() if row.get("aggregate_refused")],
        # every client a round dropped, and why (the round's log line says it too)
        dropped=[
            {"round": row["round"], "stage": stage, "why": why}
            for row in history.rows()
            for stage in ("fit", "evaluate")
            for why in row.get(f"{stage}_dropped", [])
        ],
        wall_seconds=round(state.wall_seconds(), 3),
        run_dir=str(run_dir),
        final_model=final_model,
        checkpoint=str(state.checkpoint_path),
        encrypted=state.encrypted,
        model_params=net.count_params(),
        statistics=_statistics_summary(cfg, run_dir),
        primary_metric=primary,
        higher_is_better=cfg.task.objective.higher_is_better,
    )
    if cfg.dp.enabled:
        summary["dp"] = privacy_report(
            history.rows(),
            cfg.dp,
            min_fit_clients=cfg.strategy.min_fit_clients,
            server_sees_individual_updates=mode.server_sees_individual_updates,
        )
    write_json(run_dir / "summary.json", summary)
    return summary
