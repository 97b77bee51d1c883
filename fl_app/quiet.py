"""The frameworks' start-up chatter off by default (`log_level`), real warnings kept.

TensorFlow prints its start-up lines (oneDNN, the CUDA stub, CPU features, absl's
pre-initialisation notice) from C++ straight to file descriptor 2 while it is imported,
and a failed `cuInit` when it first looks for devices on a machine without a GPU;
TF_CPP_MIN_LOG_LEVEL reaches only some of them, and TensorFlow reads it once, at import.
So `setup` runs before anything imports TensorFlow: it imports it, and probes its
devices, with descriptor 2 captured, and writes back every captured line that is not
one of the known lines below (an error, a warning, a traceback). Python-level chatter
(Ray's tip, tf.function retracing notices, Flower's per-stage lines) is filtered by
message, so `log_level=debug` brings all of it back. This module imports no framework.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from typing import Any, ClassVar

LEVELS = ("debug", "info", "warning")

# What TensorFlow writes to descriptor 2 on start-up, matched anywhere in a line.
STARTUP_LINES = re.compile(
    "|".join(
        (
            r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
            r"oneDNN custom operations are on",
            r"Could not find cuda drivers on your machine",
            r"This TensorFlow binary is optimized to use available CPU instructions",
            r"^To enable the following instructions: .* rebuild TensorFlow",
            r"failed call to cuInit",
        )
    )
)
RAY_TIP = r"Tip: In future versions of Ray"
RETRACING = "triggered tf.function retracing"
# Flower's INFO lines that the one fl_app line per round and the end summary replace.
FLOWER_STAGES = re.compile(
    r"^(\[INIT\]|\[ROUND %s\]|\[SUMMARY\]|Run finished %s round|configure_(fit|evaluate):|"
    r"aggregate_(fit|evaluate):|Using initial global parameters|Starting evaluation of "
    r"initial|Evaluation returned no results|%s$|\t%s$|$)"
)
QUIET_LOGGERS = ("mlflow", "alembic", "httpx")  # INFO start-up lines of tracking and polls
# Deprecation notices of libraries under a library (SQLAlchemy's, raised inside MLflow).
QUIET_DEPRECATIONS = r"(mlflow|sqlalchemy|alembic)(\.|$)"


class _Quiet:
    """Whether chatter is being dropped (set by `setup`; filters read it per record)."""

    on = False
    done: tuple[str, bool] = ("", False)  # (level, TensorFlow imported) last set up
    env_set: ClassVar[dict[str, str]] = {}  # environment variables set here, not by the user


def is_chatter(line: str) -> bool:
    """A line TensorFlow prints on start-up (not an error or warning of a run)."""
    return bool(STARTUP_LINES.search(line))


class _RetracingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (_Quiet.on and RETRACING in record.getMessage())


class _FlowerStageFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        stage = record.levelno == logging.INFO and FLOWER_STAGES.match(str(record.msg))
        return not (_Quiet.on and stage)


_RETRACING_FILTER = _RetracingFilter()
_FLOWER_FILTER = _FlowerStageFilter()


def check_level(level: str) -> str:
    """`level` if it is one of LEVELS, else a ValueError naming what is allowed."""
    if level not in LEVELS:
        raise ValueError(f"log_level={level!r} is invalid: allowed one of {LEVELS}")
    return level


def setup(level: str, *, tensorflow: bool = False) -> None:
    """Apply `log_level` to this process: at info and warning, drop the frameworks'
    start-up chatter; with `tensorflow`, import TensorFlow now (quietly unless debug)."""
    if _Quiet.done in ((level, tensorflow), (level, True)):
        return  # every ClientApp call of a worker process asks again
    _Quiet.on = check_level(level) != "debug"
    logging.getLogger("tensorflow").addFilter(_RETRACING_FILTER)  # added once: same object
    logging.getLogger("flwr").addFilter(_FLOWER_FILTER)
    logging.getLogger("fl_app").setLevel(level.upper())
    if _Quiet.on:
        _default_env("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's C++ INFO lines after import
        _default_env("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow applies it at import
        warnings.filterwarnings("ignore", message=RAY_TIP, category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=QUIET_DEPRECATIONS)
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    else:
        for name, value in _Quiet.env_set.items():
            if os.environ.get(name) == value:  # still ours
                del os.environ[name]
        _Quiet.env_set.clear()
        warnings.filterwarnings("default", message=RAY_TIP, category=FutureWarning)
        warnings.filterwarnings("default", category=DeprecationWarning, module=QUIET_DEPRECATIONS)
    if tensorflow:
        with _descriptor_2_filtered() if _Quiet.on else contextlib.nullcontext():
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe happens here, once
    _Quiet.done = (level, tensorflow)


def import_quietly(*modules: str) -> None:
    """Import `modules` (TensorFlow among them) without their start-up chatter, unless
    the level is debug, and without probing devices (the warm SuperExec's parent)."""
    with _descriptor_2_filtered() if _Quiet.on else contextlib.nullcontext():
        for name in modules:
            importlib.import_module(name)


def _default_env(name: str, value: str) -> None:
    if name not in os.environ:
        os.environ[name] = value
        _Quiet.env_set[name] = value


class LineFilter:
    """A text stream that passes on every whole line except start-up chatter.

    In a simulation, Ray prints its workers' output (where Flower's own import of
    TensorFlow speaks first) through the driver's `sys.stdout`/`sys.stderr`: the
    ServerApp's process. `filter_output` puts this in front of both.
    """

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self._partial = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
            kept = [line + "\n" for line in lines if not (_Quiet.on and is_chatter(line))]
            if kept:
                self.stream.write("".join(kept))
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._partial and not (_Quiet.on and is_chatter(self._partial)):
                self.stream.write(self._partial)
            self._partial = ""
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def filter_output() -> None:
    """Put a LineFilter in front of `sys.stdout` and `sys.stderr` (once). It stays for
    the process: Ray prints what it held back for deduplication when it shuts down,
    after the ServerApp has returned."""
    if not isinstance(sys.stdout, LineFilter):
        sys.stdout = LineFilter(sys.stdout)
    if not isinstance(sys.stderr, LineFilter):
        sys.stderr = LineFilter(sys.stderr)


@contextlib.contextmanager
def _descriptor_2_filtered() -> Iterator[None]:
    """Descriptor 2 captured while the block runs; what is not start-up chatter is
    written back after it."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            echo = LineFilter(sys.stderr)  # the same line filter as Ray's output gets
            echo.write(captured.read().decode(errors="replace"))
            echo.flush()
