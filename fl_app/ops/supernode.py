"""Flower's SuperNode with a short idle wait between pulls.

Flower 1.42's SuperNode loop (`flwr.supernode.start_client_internal`) sleeps a fixed
`time.sleep(3)` whenever a pull from the SuperLink returns no message. Right after a node
pushes a reply the server's next instruction is rarely there yet, so every stage of every
round (fit, then evaluate) waits up to 3 s more on every node. This runs Flower's own
`flower-supernode` main (`flwr.supernode.cli:flower_supernode`, its console script)
unchanged, except that the loop module's `time` is a proxy whose `sleep(3)` sleeps the
short interval; every other attribute, and every other sleep, is the real `time`'s.

Each idle pull is one signed HTTPS request to the SuperLink's Fleet API, so the interval
sets the SuperLink's load from idle nodes: at the default 0.25 s, 4 requests a second per
node instead of one per 3 s. `FL_APP_SUPERNODE_IDLE_SECONDS` sets it (3 is Flower's own).

    fl-app supernode --superlink 127.0.0.1:9092 --root-certificates ca.crt ...
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from logging import INFO
from typing import Any

from flwr.supercore import log
from flwr.supernode import start_client_internal as loop_module
from flwr.supernode.cli.flower_supernode import flower_supernode

FLOWER_IDLE_SECONDS = 3  # the literal of the idle `time.sleep(3)` in flwr 1.42's pull loop
IDLE_ENV, IDLE_DEFAULT = "FL_APP_SUPERNODE_IDLE_SECONDS", 0.25


class ShortIdleTime:
    """The loop module's `time`: `sleep(3)` sleeps `idle_seconds`, the rest is `time`'s."""

    def __init__(self, idle_seconds: float) -> None:
        self.idle_seconds = idle_seconds

    def sleep(self, seconds: float) -> None:
        time.sleep(self.idle_seconds if seconds == FLOWER_IDLE_SECONDS else seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def idle_seconds(env: Mapping[str, str]) -> float:
    """The idle wait `env` asks for (IDLE_ENV), or IDLE_DEFAULT."""
    raw = env.get(IDLE_ENV, "").strip()
    if not raw:
        return IDLE_DEFAULT
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 60:  # also false for nan
        raise ValueError(f"{IDLE_ENV}={raw!r} is invalid: allowed seconds in (0, 60]")
    return value


def shorten_idle_wait(seconds: float) -> None:
    """Make Flower's SuperNode loop wait `seconds`, not 3 s, after a pull finds nothing."""
    # Written against flwr 1.42: `start_client_internal` reads the module-level name
    # `time` (`import time`) at each call, and its only `time.sleep(3)` is the idle wait.
    # tests/ops/test_supernode.py fails if a Flower release changes either.
    loop_module.time = ShortIdleTime(seconds)


def run(flower_args: list[str]) -> None:
    """Run `flower-supernode flower_args` with the short idle wait; return when it stops."""
    seconds = idle_seconds(os.environ)
    shorten_idle_wait(seconds)
    log(INFO, "Idle wait between pulls: %.2f s (Flower's: %d s)", seconds, FLOWER_IDLE_SECONDS)
    sys.argv = ["flower-supernode", *flower_args]  # Flower's parser reads sys.argv
    flower_supernode()
