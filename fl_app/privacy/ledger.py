"""A holder's record-level DP ledger: every DP-SGD round it trained, in a file it owns.

Opacus' accountant state is the model: the ledger is state saved and restored like a
checkpoint, never recomputed from what a process happens to remember. Each round is
booked before the update leaves the holder, written atomically (a private temporary
file, fsync, rename, fsync of the directory), so a crash between training and sending
over-counts, never under-counts. A ledger that cannot be read is an error, never a
fresh start: a lost ledger would restart the holder's ε at 0.

The file holds no records and no model: rates, noise, step counts, rounds, and a random
holder id (reported to the server in place of Flower's node id, which changes with
every run and restart, and unlike a hash of the data reveals nothing about it).
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from fl_app.privacy.record_level import Steps, epsilon_of

FORMAT = 1


class LedgerError(ValueError):
    """A ledger file that cannot be read or written; the message names the file."""


@dataclass(frozen=True)
class Booking:
    """One round of DP-SGD training by the holder."""

    sampling_rate: float
    noise_multiplier: float
    steps: int
    round: int  # the server's round number
    run: str  # the Flower run it trained for
    time: float  # seconds since the epoch, when it was booked

    @property
    def cost(self) -> Steps:
        return Steps(self.sampling_rate, self.noise_multiplier, self.steps)


@dataclass(frozen=True)
class NoisePlan:
    """The noise calibrated for a plan (target ε over planned rounds), reused while the
    plan stays the same so that every round of it trains at the same noise."""

    key: str
    noise_multiplier: float


@dataclass(frozen=True)
class PrivacyLedger:
    """What one holder's records have spent, as read from (and written to) `path`."""

    path: Path
    holder: str
    bookings: tuple[Booking, ...] = ()
    plan: NoisePlan | None = None

    @classmethod
    def open(cls, path: Path) -> PrivacyLedger:
        """The ledger at `path`; a new, empty one (not yet written) if there is no file."""
        if not path.exists():
            return cls(path, holder=secrets.token_hex(8))
        try:
            saved = json.loads(path.read_text())
            if saved.get("format") != FORMAT:
                raise ValueError(f"format {saved.get('format')!r}, allowed {FORMAT}")
            plan = saved.get("plan")
            return cls(
                path,
                holder=str(saved["holder"]),
                bookings=tuple(Booking(**b) for b in saved["bookings"]),
                plan=NoisePlan(**plan) if plan else None,
            )
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
            raise LedgerError(
                f"the DP ledger {path} cannot be read ({type(err).__name__}: {err}); refusing "
                "to train, as starting again at ε=0 would hide what these records have spent: "
                "restore the file, or move it away knowingly"
            ) from err

    @property
    def steps(self) -> int:
        return sum(b.steps for b in self.bookings)

    def spent(self) -> tuple[Steps, ...]:
        return tuple(b.cost for b in self.bookings)

    def epsilon(self, delta: float, *more: Steps) -> float:
        """ε at `delta` over every booked round, and `more` steps not yet booked."""
        return epsilon_of([*self.spent(), *more], delta)

    def booked(self, booking: Booking, plan: NoisePlan | None) -> PrivacyLedger:
        """This ledger with `booking` added, written to its file before it is returned."""
        later = replace(self, bookings=(*self.bookings, booking), plan=plan)
        later._write()
        return later

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "holder": self.holder,
            "plan": asdict(self.plan) if self.plan else None,
            "bookings": [asdict(b) for b in self.bookings],
        }

    def _write(self) -> None:
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            handle, temporary = tempfile.mkstemp(dir=folder, prefix=".dp-ledger-", suffix=".tmp")
        except OSError as err:
            raise LedgerError(
                f"the DP ledger {self.path} cannot be written ({err}); refusing to send an "
                "update whose privacy cost is not booked (node config dp-ledger-dir names "
                "a writable directory)"
            ) from err
        try:  # mkstemp makes the file 0600
            with os.fdopen(handle, "w") as out:
                json.dump(self.to_json(), out, indent=1)
                out.flush()
                os.fsync(out.fileno())
            Path(temporary).replace(self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
