"""A Grid that counts the bytes of every message the ServerApp sends and receives.

The strategy sees only what reaches it (under SecAgg+, the unmasked aggregate); this
counts what actually travels between the ServerApp and the ClientApps, for every mode
alike: the serialised content of each message (model arrays, configs, metrics, SecAgg+
keys and shares, HE properties queries), without transport framing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flwr.app import Message, RecordDict
from flwr.common.serde import recorddict_to_proto
from flwr.server import Grid


def content_bytes(message: Message) -> int:
    """Serialised size of a message's content (0 for an error reply)."""
    if not message.has_content():
        return 0
    return recorddict_to_proto(message.content).ByteSize()


class CountingGrid(Grid):
    """Wraps a Grid; `bytes_down`/`bytes_up` grow with every message sent/received."""

    def __init__(self, inner: Grid) -> None:
        self._inner = inner
        self.bytes_down = 0
        self.bytes_up = 0

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
        return self._received(self._inner.send_and_receive(self._sent(messages), timeout=timeout))
