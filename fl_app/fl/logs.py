"""Route fl_app's loggers through Flower's handlers so `flwr run --stream` shows them."""

from __future__ import annotations

import logging


def use_flower_handlers() -> None:
    """Send `fl_app.*` records at INFO and above wherever Flower's own logs go."""
    flower = logging.getLogger("flwr")
    ours = logging.getLogger("fl_app")
    ours.setLevel(logging.INFO)
    ours.handlers = list(flower.handlers)
    ours.propagate = not ours.handlers
