"""A failed run says why in its last line.

Flower ends a run whose ServerApp raised as `finished:failed` and logs the exception with
its whole traceback, so the cause of a failure fl_app itself diagnosed (a config key, a
data file, a key file, a privacy budget, no round aggregated) sat at the bottom of some
60 lines. Here such a failure becomes one plain line, "run failed: <cause> — <fix>",
which is the last line `flwr run --stream` shows; the traceback goes to a private file
(and stays in the log at `log_level=debug`). Failures fl_app does not know keep Flower's
full report.
"""

from __future__ import annotations

import logging
import re
import traceback
from pathlib import Path

from fl_app.config.errors import ConfigError
from fl_app.crypto.keys import HEKeyError
from fl_app.crypto.secret_files import write_private
from fl_app.ml.checks import DataError, TaskError
from fl_app.privacy.ledger import LedgerError
from fl_app.privacy.record_level import BudgetExceeded
from fl_app.run.checkpoint import CheckpointError

PREFIX = "run failed: "


class NoRoundAggregated(RuntimeError):
    """Every round of the run ended without an aggregate (every update dropped)."""


# What a user does about each failure fl_app knows; the error's own message names the
# key, file or value.
FIXES: dict[type[BaseException], str] = {
    ConfigError: "change that key or value (run config, `overrides`, or the task's YAML)",
    DataError: "fix the data the task reads (task.source, task.source_args)",
    TaskError: "fix the task's model (task.model, task.model_args)",
    HEKeyError: "point he.public_context/he.secret_context at keys `fl-app keygen` made",
    CheckpointError: "resume only this run's own checkpoint, or start without resume=true",
    BudgetExceeded: "raise dp.target_epsilon or dp.max_epsilon, or train fewer rounds",
    LedgerError: "restore the holder's DP ledger file (a lost ledger is never restarted)",
    NoRoundAggregated: "see each dropped client's reason in the round lines above",
}
KNOWN = tuple(FIXES)
# The clients' side of a failure: a known error's name in a dropped client's reason.
CLIENT_CAUSE = re.compile(rf"\b({'|'.join(cls.__name__ for cls in KNOWN)}): (.+)", re.S)


class RunFailed(Exception):
    """A known failure as its one line, raised to Flower so the run still ends failed."""


def one_line(err: BaseException) -> str:
    """`<Error>: <message> — <fix>` on one line (Hydra's multi-line reports cut to their
    first paragraph)."""
    fix = next(text for cls, text in FIXES.items() if isinstance(err, cls))
    return f"{type(err).__name__}: {flat(str(err))} — {fix}"


def flat(text: str, width: int = 400) -> str:
    """`text`'s first paragraph on one line, cut to `width`."""
    first = " ".join(text.strip().split("\n\n", 1)[0].split())
    return first if len(first) <= width else first[: width - 1] + "…"


def known_cause(reason: str) -> str | None:
    """The fl_app error a client's failure reason names (Flower wraps a ClientApp's
    exception, traceback and all, into its reason string), as `<Error>: <message>`."""
    if match := CLIENT_CAUSE.search(reason):
        message = match.group(2).split("\\n", 1)[0].split("\n", 1)[0]
        return f"{match.group(1)}: {flat(message.rstrip(chr(39) + '>)'), 240)}"
    return None


def client_cause(reasons: list[str]) -> str | None:
    """The known error behind the dropped clients' reasons (the most frequent one), or
    None when none names one."""
    causes: dict[str, int] = {}
    for cause in filter(None, map(known_cause, reasons)):
        causes[cause] = causes.get(cause, 0) + 1
    return max(causes, key=causes.__getitem__) if causes else None


def fail(err: BaseException, log_dir: Path | None, run_id: int) -> RunFailed:
    """The RunFailed to raise for a known `err`; its traceback written (0600) into
    `log_dir`/run<id>.log when there is one (named in the line)."""
    line = one_line(err)
    if log_dir is not None:
        path = log_dir / f"run{run_id}.log"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_private(path, "".join(traceback.format_exception(err)).encode())
            line += f" (traceback: {path})"
        except OSError:
            pass  # the line itself is the report
    return RunFailed(line)


class OneLineFailure(logging.Filter):
    """On Flower's logger: its "ServerApp raised an exception" record of a RunFailed
    becomes the one line, without the traceback unless `keep_traceback` (debug), and the
    exit report Flower logs after it is left out (the run's status says failed)."""

    def __init__(self, keep_traceback: bool) -> None:
        super().__init__()
        self.keep_traceback = keep_traceback
        self.reported = False

    def filter(self, record: logging.LogRecord) -> bool:
        failure = record.exc_info[1] if record.exc_info else None
        if isinstance(failure, RunFailed):
            record.msg, record.args = PREFIX + "%s", (str(failure),)
            if not self.keep_traceback:
                record.exc_info = record.exc_text = None
            self.reported = True
        elif self.reported and str(record.msg).startswith("Exit Code:"):
            return False  # Flower's generic exit report would follow, and bury, the line
        elif not self.keep_traceback and record.levelno >= logging.ERROR:
            # A simulated ClientApp's known failure: Flower logs its exception and
            # traceback; the round's line names the cause already.
            text = str(record.msg)
            if ("Traceback" in text or "ClientAppException" in text) and known_cause(text):
                return False
        return True


def report_failures_in_one_line(level: str) -> None:
    """Install the filter once on Flower's logger (idempotent)."""
    flower = logging.getLogger("flwr")
    for old in [f for f in flower.filters if isinstance(f, OneLineFailure)]:
        flower.removeFilter(old)
    flower.addFilter(OneLineFailure(keep_traceback=level == "debug"))
