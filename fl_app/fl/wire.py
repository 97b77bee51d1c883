"""The ServerApp's Grid: counts the bytes of every message, and collects replies soon.

Counting: the strategy sees only what reaches it (under SecAgg+, the unmasked
aggregate); this counts what actually travels between the ServerApp and the
ClientApps, for every mode alike: the serialised content of each message (model
arrays, configs, metrics, SecAgg+ keys and shares, HE properties queries), without
transport framing.

Collecting: Flower's deployment grid (flwr 1.42, `superlink/grid/http_grid.py`) sleeps
a fixed 3 s between polls for replies, so a reply that arrives just after a poll waits
up to 3 s. `send_and_receive` here pushes and pulls through the same public Grid API
but polls after `poll_interval` seconds, doubling the wait after every empty poll up to
`max_interval` and starting short again whenever replies arrive.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Protocol

from flwr.app import Message, RecordDict
from flwr.common.serde import recorddict_to_proto
from flwr.server import Grid


def content_bytes(message: Message) -> int:
    """Serialised size of a message's content (0 for an error reply)."""
    if not message.has_content():
        return 0
    return recorddict_to_proto(message.content).ByteSize()


class WireMeter(Protocol):
    """Running totals of message bytes (what the strategy reads from CountingGrid)."""

    bytes_up: int
    bytes_down: int


class CountingGrid(Grid):
    """Wraps a Grid; `bytes_down`/`bytes_up` grow with every message sent/received."""

    def __init__(
        self, inner: Grid, *, poll_interval: float = 0.1, max_interval: float = 0.5
    ) -> None:
        if not 0 < poll_interval <= max_interval:
            raise ValueError(
                f"poll_interval={poll_interval}, max_interval={max_interval}: allowed "
                "0 < poll_interval <= max_interval"
            )
        self._inner = inner
        self.poll_interval = poll_interval
        self.max_interval = max_interval
        self.bytes_down = 0
        self.bytes_up = 0
        self.polls = 0

    def _sent(self, messages: Iterable[Message]) -> list[Message]:
        messages = list(messages)
        self.bytes_down += sum(content_bytes(m) for m in messages)
        return messages

    def _received(self, messages: Iterable[Message]) -> list[Message]:
        messages = list(messages)
        self.bytes_up += sum(content_bytes(m) for m in messages)
        return messages

    # Everything below delegates to the wrapped Grid.
    def set_run(self, run: Any) -> None:
        self._inner.set_run(run)

    @property
    def run(self) -> Any:
        return self._inner.run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return self._inner.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self._inner.get_node_ids()

    def get_nodes(self) -> Iterable[Any]:
        return self._inner.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self._inner.push_messages(self._sent(messages))

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._received(self._inner.pull_messages(message_ids))

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Push `messages`, then pull until every one has a reply or `timeout` passes."""
        pending = set(self.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        wait = self.poll_interval / 2  # the first empty poll waits poll_interval
        while pending:
            self.polls += 1
            arrived = list(self.pull_messages(pending))
            replies.extend(arrived)
            pending.difference_update(m.metadata.reply_to_message_id for m in arrived)
            if not pending or (deadline is not None and time.monotonic() >= deadline):
                break
            wait = self.poll_interval if arrived else min(2 * wait, self.max_interval)
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            time.sleep(wait)
        return replies
