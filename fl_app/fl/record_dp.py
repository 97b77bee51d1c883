"""Record-level DP on a client (dp.level=record): DP-SGD training whose privacy loss is
kept in the node's own ledger, in Flower's per-node `Context.state`, across rounds.

The holder, not the server, counts what its records have spent: the steps it trained,
at its own sampling rate q = batch_size / n and noise. It reports ε with its update and
refuses to train past `dp.max_epsilon`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
from flwr.app import ConfigRecord, RecordDict
from flwr.common import Scalar

from fl_app.fl.protocol import DP_EPSILON, DP_NOISE, DP_STEPS
from fl_app.ml.data import Split
from fl_app.ml.dpsgd import DPSGDSettings, sampling_rate, steps_per_epoch, train_private
from fl_app.ml.features import num_rows
from fl_app.privacy.records import HolderLedger, calibrated_noise

LEDGER_KEY = "fl_app.dp-sgd"  # the ConfigRecord in Context.state that holds the ledger


@dataclass
class RecordDP:
    """dp.* for DP-SGD, and where this node keeps its ledger."""

    clip_norm: float
    noise_multiplier: float
    delta: float
    target_epsilon: float  # > 0: noise calibrated for planned_rounds rounds of training
    max_epsilon: float  # > 0: the budget past which the holder refuses to train
    planned_rounds: int
    state: RecordDict  # Flower's Context.state of this node

    def noise_for(self, q: float, steps_per_round: int) -> float:
        if self.target_epsilon <= 0:
            return self.noise_multiplier
        planned = steps_per_round * max(1, self.planned_rounds)
        return calibrated_noise(q, planned, self.target_epsilon, self.delta)

    def train(
        self, net: keras.Model, data: Split, *, epochs: int, batch_size: int
    ) -> dict[str, Scalar]:
        """Train `net` on `data` with DP-SGD and book it; the ε the holder has spent."""
        n = num_rows(data.x)
        q, steps = sampling_rate(n, batch_size), epochs * steps_per_epoch(n, batch_size)
        sigma = self.noise_for(q, steps)
        ledger = self._ledger(q, sigma)
        later = ledger.after(steps, self.max_epsilon)  # BudgetExceeded before any training
        train_private(net, data, DPSGDSettings(self.clip_norm, sigma), epochs=epochs,
                      batch_size=batch_size)  # fmt: skip
        self.state[LEDGER_KEY] = ConfigRecord(
            {"sampling_rate": q, "noise_multiplier": sigma, "steps": later.steps}
        )
        return {DP_EPSILON: later.epsilon, DP_STEPS: later.steps, DP_NOISE: sigma}

    def _ledger(self, q: float, sigma: float) -> HolderLedger:
        saved: Any = self.state.get(LEDGER_KEY)
        if saved is None:
            return HolderLedger(q, sigma, self.delta)
        if (float(saved["sampling_rate"]), float(saved["noise_multiplier"])) != (q, sigma):
            raise ValueError(
                f"this holder's DP-SGD changed within the run (sampling rate "
                f"{saved['sampling_rate']:.4g} -> {q:.4g}, noise {saved['noise_multiplier']:.4g}"
                f" -> {sigma:.4g}): its ledger cannot compose them; start a new run"
            )
        return HolderLedger(q, sigma, self.delta, int(saved["steps"]))
