"""CountingGrid counts what travels, and the strategy books it per round."""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fl_app.fl.strategy import RecordingFedAvg
from fl_app.fl.wire import CountingGrid, content_bytes
from fl_app.run.history import RunHistory


def test_counting_grid_counts_message_content_both_ways(monkeypatch):
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)  # messages belong to a run
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 0)

    class EchoGrid:  # only what CountingGrid calls
        def send_and_receive(self, messages, *, timeout=None):
            return [Message(RecordDict({"w": ArrayRecord([np.ones(10)])}), reply_to=m)
                    for m in messages]  # fmt: skip

    out = [
        Message(
            RecordDict({"w": ArrayRecord([np.zeros(1000, np.float32)])}),
            dst_node_id=node,
            message_type="train",
        )
        for node in (1, 2)
    ]
    grid = CountingGrid(EchoGrid())
    replies = list(grid.send_and_receive(out))
    assert 2 * 4000 < grid.bytes_down == sum(content_bytes(m) for m in out) < 2 * 4200
    assert 2 * 80 < grid.bytes_up == sum(content_bytes(m) for m in replies) < 2 * 280

    strategy = RecordingFedAvg(history=RunHistory())
    strategy.wire = grid
    strategy._end_round(1)
    grid.bytes_up += 5
    strategy._end_round(2)
    assert strategy.history.row(1)["wire_bytes_down"] == grid.bytes_down
    assert strategy.history.row(2)["wire_bytes_up"] == 5
