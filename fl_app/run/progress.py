"""What a person reads while a run goes and when it ends: one line per round, a summary.

    round 2/3 · 10/10 clients · train accuracy 0.643 · eval accuracy 0.817 · up 299 kB/client
    (1.94× float32) · 2.0 s

The whole round record goes to DEBUG (`log_level=debug`), and to the trackers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fl_app.run.artifacts import upload_per_client
from fl_app.run.history import RunHistory

logger = logging.getLogger(__name__)

FLOAT32_BYTES = 4


def human_bytes(n: float) -> str:
    """`n` bytes in kB, MB or GB (powers of 1000, as the docs' tables)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def number(value: float) -> str:
    """A metric as a person reads it: three decimals, or four significant digits."""
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.4g}"


@dataclass(frozen=True)
class RunFacts:
    """What the per-round line needs that a round's record does not hold."""

    num_rounds: int
    primary: str = "accuracy"  # the task's primary metric (task.objective.primary)
    model_params: int = 0  # for the size of an update against float32 weights


def _latest(history: RunHistory, rnd: int, key: str) -> tuple[int, Any] | None:
    """(round, value) of the latest round <= `rnd` whose record has `key`."""
    for row in reversed(history.rows()):
        if row["round"] <= rnd and row.get(key) is not None:
            return row["round"], row[key]
    return None


def evaluations_for_line(
    history: RunHistory, rnd: int, key: str, shown: Collection[int] = ()
) -> list[tuple[int, Any]]:
    """(round, value) of the evaluations line `rnd` gives: those of rounds rnd - 1 (it
    arrives with round rnd's fit under strategy.evaluate_with_fit) and rnd that no line
    has shown yet, else the latest one (a round that evaluates only every k rounds)."""
    new = [
        (of, value)
        for of in (rnd - 1, rnd)
        if of not in shown and (value := history.row(of).get(key)) is not None
    ]
    latest = _latest(history, rnd, key)
    return new or ([latest] if latest is not None else [])


def round_line(history: RunHistory, rnd: int, facts: RunFacts, shown: Collection[int] = ()) -> str:
    """One readable line for round `rnd`: clients, the primary metric, upload, time;
    `shown`: the rounds whose evaluation an earlier line gave."""
    row, primary = history.row(rnd), facts.primary
    clients = f"{row.get('fit_clients', 0)}/{row.get('fit_sampled', 0)} clients"
    if row.get("fit_failures"):
        clients += f" ({row['fit_failures']} failed or rejected)"
    parts = [f"round {rnd}/{facts.num_rounds}", clients]
    if row.get("aggregate_refused"):
        parts.append(f"aggregate refused by the clients ({row['aggregate_refused']}): "
                     "previous model kept")  # fmt: skip
    elif row.get("aggregated") is False:
        parts.append("not aggregated: previous model kept")
    if row.get(f"train_{primary}") is not None:
        parts.append(f"train {primary} {number(row[f'train_{primary}'])}")
    if evaluated := evaluations_for_line(history, rnd, f"eval_{primary}", shown):
        values = [
            number(v) + (f" (round {of})" if of != rnd else "") + _mean_tag(history, of, primary)
            for of, v in evaluated
        ]
        parts.append(f"eval {primary} " + ", ".join(values))
    if row.get(f"centralized_{primary}") is not None:
        parts.append(f"server {primary} {number(row[f'centralized_{primary}'])}")
    dropped = [*row.get("fit_dropped", []), *row.get("evaluate_dropped", [])]
    if dropped:
        parts.append("dropped " + "; ".join(_short(why) for why in dropped))
    if row.get("dp_epsilon_max") is not None:
        parts.append(f"ε {row['dp_epsilon_max']:.2f}")
    elif row.get("dp_unbounded"):
        parts.append("ε unbounded (no noise)")
    if (up := upload_per_client(row)) is not None:
        ratio = up / (FLOAT32_BYTES * facts.model_params) if facts.model_params else 0
        parts.append(f"up {human_bytes(up)}/client" + (f" ({ratio:.2f}× float32)" * bool(ratio)))
    if row.get("round_seconds") is not None:
        parts.append(f"{row['round_seconds']:.1f} s")
    return " · ".join(parts)


def _mean_tag(history: RunHistory, rnd: int, metric: str) -> str:
    """ " (mean of clients)" when round `rnd`'s `metric` could not be pooled."""
    means = str(history.row(rnd).get("eval_mean_of_clients") or "").split(",")
    return " (mean of clients)" if metric in means else ""


def summary_lines(
    summary: dict[str, Any],
    files: Iterable[str] = (),
    secret: str | None = None,
    app_dir: Path | None = None,
) -> list[str]:
    """The end-of-run block: rounds and final metrics, where things are, ε, decryption
    (`secret`: where the HE secret context is, when this machine knows; `app_dir`: the
    user app whose task the decryption composes)."""
    primary = summary.get("primary_metric", "accuracy")
    final = summary.get("final_metric")
    head = (
        f"Run finished: {summary['rounds_completed']} of {summary['rounds_run']} round(s) "
        f"aggregated in {summary.get('wall_seconds', 0):.1f} s, final {primary} "
        + ("—" if final is None else number(final))
    )
    if summary.get("final_loss") is not None and primary != "loss":
        head += f", loss {number(summary['final_loss'])}"
    where = f"  artifacts  {summary['run_dir']}" + (f" ({', '.join(files)})" if files else "")
    lines = [head, where]
    if summary.get("final_model"):
        lines.append(f"  model      {summary['final_model']}")
    elif summary.get("encrypted") and summary.get("rounds_completed"):
        where = "" if secret else " where secret.ctx lives"
        app = f" --app {app_dir}" if app_dir is not None else ""
        lines.append(
            f"  model      encrypted; decrypt it{where}: fl-app decrypt --secret "
            f"{secret or 'secret.ctx'} --checkpoint {summary['checkpoint']} --out model.keras" + app
        )
    if (dp := summary.get("dp")) is not None:
        if dp["epsilon"] is not None:
            lines.append(f"  privacy    ε {dp['epsilon']:.3g} at δ {dp['delta']:g}")
        elif "per_holder_epsilon" in dp and not dp["per_holder_epsilon"]:
            lines.append("  privacy    no holder trained, so none spent any ε")
        else:
            lines.append(f"  privacy    ε unbounded (no noise) at δ {dp['delta']:g}")
    return lines


RoundSink = Callable[[int, dict[str, Any]], None]


@dataclass
class RunReport:
    """Called when a round is complete: logs its line (and its record at DEBUG) and
    hands the records not yet handed on (a later evaluation of an earlier round, say)
    to every sink, such as the trackers."""

    history: RunHistory
    facts: RunFacts
    sinks: list[RoundSink] = field(default_factory=list)
    _sent: dict[int, dict[str, Any]] = field(default_factory=dict)
    _shown: set[int] = field(default_factory=set)  # rounds whose evaluation a line gave

    def round_complete(self, rnd: int) -> None:
        logger.info("%s", round_line(self.history, rnd, self.facts, self._shown))
        key = f"eval_{self.facts.primary}"
        self._shown.update(of for of, _ in evaluations_for_line(self.history, rnd, key))
        logger.debug("round %d record: %s", rnd, self.history.row(rnd))
        self.flush(upto=rnd)

    def flush(self, upto: int | None = None) -> None:
        """Give the sinks what changed in every round up to `upto` (all: None)."""
        for row in self.history.rows():
            rnd = row["round"]
            if upto is not None and rnd > upto:
                continue
            sent = self._sent.setdefault(rnd, {})
            new = {k: v for k, v in row.items() if k != "round" and sent.get(k) != v}
            if new:
                sent.update(new)
                self._send(rnd, new)

    def _send(self, rnd: int, values: dict[str, Any]) -> None:
        for sink in list(self.sinks):
            try:
                sink(rnd, values)
            except Exception as err:  # a tracker must never end a training run
                logger.warning("%s failed and is off for this run: %s", type(sink).__name__, err)
                self.sinks.remove(sink)


def _short(why: str, width: int = 90) -> str:
    """A dropped client's reason for the round line: without the exception type, cut."""
    head, sep, rest = why.partition(": ")
    text = rest if sep and head.isidentifier() and head[0].isupper() else why
    return text if len(text) <= width else text[: width - 1] + "…"
