"""Record-level DP on a client (dp.level=record): DP-SGD training whose privacy loss is
booked in the holder's own ledger file (fl_app.privacy.ledger) every round, before the
update leaves.

The holder, not the server, counts what its records have spent: every DP-SGD step it
ever trained on them — in this run, in the run it resumes, before a SuperNode restart,
in earlier runs over the same data file — at its own sampling rate q = batch_size / n
and noise. It reports ε with its update, under a holder id of its ledger (not Flower's
node id), and refuses to train past its budget.

Where the ledger lives: a deployed SuperNode keeps it beside its data file (or in the
directory its node config names, `dp-ledger-dir`), named after a hash of the data file,
so every run over that file reads it back. A simulated node keeps it under the run
directory (the server names it in the fit instruction; simulation only), one file per
partition.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import keras
from flwr.common import Scalar

from fl_app.fl.protocol import (
    DP_EPSILON,
    DP_HOLDER,
    DP_LEDGER_DIR_KEY,
    DP_NOISE,
    DP_STEPS,
    NODE_DATA_KEY,
    NODE_LEDGER_DIR_KEY,
    ROUND_KEY,
)
from fl_app.ml.data import Split
from fl_app.ml.dpsgd import ClipAndNoise, sampling_rate, steps_per_epoch, train_private
from fl_app.ml.features import fingerprint, num_rows
from fl_app.privacy.ledger import Booking, NoisePlan, PrivacyLedger
from fl_app.privacy.record_level import BudgetExceeded, Steps, calibrated_noise

LedgerPlace = Callable[[Mapping[str, Scalar]], Path]  # fit config -> the ledger's file


@dataclass
class RecordDP:
    """dp.* for DP-SGD, and where this holder's ledger is."""

    clip_norm: float
    noise_multiplier: float
    delta: float
    target_epsilon: float  # > 0: noise calibrated for planned_rounds rounds of training
    max_epsilon: float  # > 0: the budget past which the holder refuses to train
    planned_rounds: int
    ledger_at: LedgerPlace
    run: str = ""  # the Flower run id, kept with every booking

    @property
    def budget(self) -> float:
        """The ε a holder never passes: dp.max_epsilon, else dp.target_epsilon (0: none)."""
        return self.max_epsilon if self.max_epsilon > 0 else self.target_epsilon

    def noise_for(
        self, ledger: PrivacyLedger, q: float, steps: int, server_round: int
    ) -> tuple[float, NoisePlan | None]:
        """The noise of this round: dp.noise_multiplier, or calibrated so that what the
        ledger holds plus the plan's remaining rounds land at dp.target_epsilon."""
        if self.target_epsilon <= 0:
            return self.noise_multiplier, ledger.plan
        key = (
            f"q={q!r} steps={steps} target={self.target_epsilon!r} delta={self.delta!r} "
            f"rounds={self.planned_rounds}"
        )
        if ledger.plan is not None and ledger.plan.key == key:
            return ledger.plan.noise_multiplier, ledger.plan
        remaining = max(1, self.planned_rounds - max(1, server_round) + 1)
        sigma = calibrated_noise(
            q, remaining * steps, self.target_epsilon, self.delta, ledger.spent()
        )
        return sigma, NoisePlan(key, sigma)

    def train(
        self,
        net: keras.Model,
        data: Split,
        *,
        epochs: int,
        batch_size: int,
        config: Mapping[str, Scalar],
        proximal_mu: float = 0.0,
    ) -> dict[str, Scalar]:
        """Train `net` on `data` with DP-SGD and book it; the ε the holder has spent."""
        ledger = PrivacyLedger.open(self.ledger_at(config))
        n = num_rows(data.x)
        q, steps = sampling_rate(n, batch_size), epochs * steps_per_epoch(n, batch_size)
        server_round = int(config.get(ROUND_KEY, 0))
        sigma, plan = self.noise_for(ledger, q, steps, server_round)
        after = ledger.epsilon(self.delta, Steps(q, sigma, steps))
        if self.budget > 0 and after > self.budget * (1 + 1e-9):
            which = "dp.max_epsilon" if self.max_epsilon > 0 else "dp.target_epsilon"
            raise BudgetExceeded(
                f"this round would take the holder's records to ε={after:.3g} at "
                f"δ={self.delta:g}, past {which}={self.budget:g} (spent so far "
                f"ε={ledger.epsilon(self.delta):.3g} in {ledger.steps} steps, by its ledger "
                f"{ledger.path.name}); refusing to train"
            )
        train_private(net, data, ClipAndNoise(self.clip_norm, sigma), epochs=epochs,
                      batch_size=batch_size, proximal_mu=proximal_mu)  # fmt: skip
        booking = Booking(q, sigma, steps, server_round, self.run, time.time())
        ledger = ledger.booked(booking, plan)  # on disk before the update leaves
        return {
            DP_EPSILON: after,  # infinite without noise: no bound (the summary says so)
            DP_STEPS: ledger.steps,
            DP_NOISE: sigma,
            DP_HOLDER: ledger.holder,
        }


def ledger_place(node_config: Mapping[str, Any], train: Split) -> LedgerPlace:
    """Where this node's ledger is, by what it holds (never by Flower's node id)."""
    if NODE_DATA_KEY in node_config:  # a deployed SuperNode: its own data file
        data_file = Path(str(node_config[NODE_DATA_KEY])).expanduser().resolve()
        folder = Path(str(node_config.get(NODE_LEDGER_DIR_KEY) or data_file.parent))
        path = folder.expanduser() / f"dp-ledger-{_file_hash(data_file)[:24]}.json"
        return lambda config: path
    partition = node_config["partition-id"]
    name = f"dp-ledger-partition{partition}-{fingerprint(train.x, train.y)[:16]}.json"

    def in_run_dir(config: Mapping[str, Scalar]) -> Path:
        folder = str(config.get(DP_LEDGER_DIR_KEY, ""))
        if not folder:
            raise ValueError(
                "a simulated holder needs the run's ledger directory in its fit instruction "
                f"({DP_LEDGER_DIR_KEY}); refusing to train without a ledger"
            )
        return Path(folder) / name

    return in_run_dir


def _file_hash(path: Path) -> str:
    stat = path.stat()
    return _hash_of(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _hash_of(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a data file, once per process and version of the file."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
