"""Per-round history of a run and the files it leaves behind."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# Columns of metrics.csv, in order; a round lacks the ones its mode does not produce.
COLUMNS = (
    "round",
    "fit_clients",
    "fit_failures",
    "fit_sampled",
    "fit_available",
    "train_loss",
    "train_accuracy",
    "train_seconds",
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


class RunHistory:
    """Metrics per round, keyed by the run's round number (0 = initial model)."""

    def __init__(self, rounds: dict[int, dict[str, Any]] | None = None) -> None:
        self._rounds: dict[int, dict[str, Any]] = {
            int(r): dict(v) for r, v in (rounds or {}).items()
        }

    def record(self, server_round: int, **values: Any) -> None:
        """Set values for a round (later values of the same key win)."""
        row = self._rounds.setdefault(server_round, {"round": server_round})
        row.update(values)

    def add(self, server_round: int, key: str, amount: float) -> None:
        """Accumulate a counter such as bytes for a round."""
        row = self._rounds.setdefault(server_round, {"round": server_round})
        row[key] = row.get(key, 0) + amount

    def row(self, server_round: int) -> dict[str, Any]:
        """A copy of one round's values (empty if the round has none)."""
        return dict(self._rounds.get(server_round, {}))

    def rows(self) -> list[dict[str, Any]]:
        """One dict per round, in round order."""
        return [dict(self._rounds[r]) for r in sorted(self._rounds)]

    def last(self, key: str) -> Any:
        """The value of `key` in the latest round that has it, else None."""
        for r in sorted(self._rounds, reverse=True):
            if self._rounds[r].get(key) is not None:
                return self._rounds[r][key]
        return None

    def total(self, key: str) -> float:
        """Sum of `key` over all rounds."""
        return sum(row.get(key) or 0 for row in self._rounds.values())

    def to_json(self) -> dict[str, dict[str, Any]]:
        return {str(r): row for r, row in self._rounds.items()}


def write_metrics(history: RunHistory, out_dir: Path) -> None:
    """metrics.csv and metrics.json, one row per round."""
    rows = history.rows()
    (out_dir / "metrics.json").write_text(json.dumps(rows, indent=2))
    with (out_dir / "metrics.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_plot(history: RunHistory, path: Path, title: str) -> None:
    """Loss and accuracy per round for every kind of evaluation the run produced."""
    rows = history.rows()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    series = (("train", "local training"), ("eval", "federated eval"))
    series += (("centralized", "centralised eval"),)
    for prefix, label in series:
        for ax, metric in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            points = [
                (row["round"], row[f"{prefix}_{metric}"])
                for row in rows
                if row.get(f"{prefix}_{metric}") is not None
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", label=label)
    for ax, metric in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set_xlabel("round")
        ax.set_ylabel(metric)
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


def summarise(history: RunHistory, **run_facts: Any) -> dict[str, Any]:
    """The run summary: final metrics and byte totals plus the facts given."""
    return {
        **run_facts,
        "final_accuracy": history.last("eval_accuracy"),
        "final_loss": history.last("eval_loss"),
        "final_centralized_accuracy": history.last("centralized_accuracy"),
        "final_centralized_loss": history.last("centralized_loss"),
        "bytes_up_total": int(history.total("bytes_up")),
        "bytes_down_total": int(history.total("bytes_down")),
        "wire_bytes_up_total": int(history.total("wire_bytes_up")),
        "wire_bytes_down_total": int(history.total("wire_bytes_down")),
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
