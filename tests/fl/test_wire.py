"""CountingGrid counts what travels and collects replies with short polls, and the
strategy books the bytes per round."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from flwr.app import ArrayRecord, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from strategies import plain_fedavg

from fl_app.fl import wire
from fl_app.fl.wire import CountingGrid, content_bytes
from fl_app.run.history import RunHistory


class EchoGrid:
    """Only what CountingGrid calls: node k's reply is ready after `ready[k]` pulls."""

    def __init__(self, ready=None):
        self.ready, self.pulls, self.pushed = ready or {}, 0, {}

    def push_messages(self, messages):
        for message in messages:
            message.metadata.__dict__["_message_id"] = str(uuid.uuid4())
            self.pushed[message.metadata.message_id] = message
        return list(self.pushed)

    def pull_messages(self, message_ids):
        self.pulls += 1
        return [
            Message(RecordDict({"w": ArrayRecord([np.ones(10)])}), reply_to=message)
            for mid, message in self.pushed.items()
            if mid in set(message_ids)
            and self.ready.get(message.metadata.dst_node_id, 0) < self.pulls
        ]


@pytest.fixture
def in_a_run(monkeypatch):
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)  # messages belong to a run
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 0)


def messages(nodes=(1, 2)):
    return [
        Message(
            RecordDict({"w": ArrayRecord([np.zeros(1000, np.float32)])}),
            dst_node_id=node,
            message_type="train",
        )
        for node in nodes
    ]


def test_replies_are_polled_for_with_a_short_doubling_wait(in_a_run, monkeypatch):
    waits = []
    monkeypatch.setattr(wire.time, "sleep", waits.append)
    inner = EchoGrid(ready={1: 2, 2: 7})  # node 1 answers on pull 3, node 2 on pull 8
    grid = CountingGrid(inner, poll_interval=0.1, max_interval=0.5)
    replies = list(grid.send_and_receive(messages()))
    assert sorted(r.metadata.src_node_id for r in replies) == [1, 2]
    # empty polls double the wait up to the cap; a reply starts it short again
    assert waits == pytest.approx([0.1, 0.2, 0.1, 0.2, 0.4, 0.5, 0.5])
    assert grid.polls == inner.pulls == 8


def test_polling_stops_at_the_timeout_with_what_arrived(in_a_run, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(wire.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(wire.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    grid = CountingGrid(EchoGrid(ready={1: 0, 2: 10**6}), poll_interval=0.1, max_interval=1.0)
    replies = list(grid.send_and_receive(messages(), timeout=2.0))
    assert [r.metadata.src_node_id for r in replies] == [1]
    assert clock[0] == pytest.approx(2.0)


def test_poll_intervals_are_checked():
    with pytest.raises(ValueError, match="0 < poll_interval <= max_interval"):
        CountingGrid(EchoGrid(), poll_interval=1.0, max_interval=0.5)


def test_counting_grid_counts_message_content_both_ways(in_a_run):
    out = messages()
    grid = CountingGrid(EchoGrid())
    replies = list(grid.send_and_receive(out))
    assert 2 * 4000 < grid.bytes_down == sum(content_bytes(m) for m in out) < 2 * 4200
    assert 2 * 80 < grid.bytes_up == sum(content_bytes(m) for m in replies) < 2 * 280

    strategy = plain_fedavg(history=RunHistory())
    strategy.wire = grid
    strategy._end_round(1)
    grid.bytes_up += 5
    strategy._end_round(2)
    assert strategy.history.row(1)["wire_bytes_down"] == grid.bytes_down
    assert strategy.history.row(2)["wire_bytes_up"] == 5
