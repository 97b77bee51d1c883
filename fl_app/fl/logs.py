"""Route fl_app's loggers through Flower's handlers so `flwr run --stream` shows them."""

from __future__ import annotations

import logging

from flwr.common.logger import update_console_handler


def use_flower_handlers(level: str = "info") -> None:
    """Send `fl_app.*` records wherever Flower's own logs go (their level is
    fl_app.quiet.setup's, which runs first); at debug, Flower's console shows its DEBUG
    records too."""
    flower = logging.getLogger("flwr")
    ours = logging.getLogger("fl_app")
    ours.handlers = list(flower.handlers)
    ours.propagate = not ours.handlers
    if level == "debug":
        update_console_handler(level=logging.DEBUG)
