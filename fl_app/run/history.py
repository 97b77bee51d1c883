"""The per-round record of a run: what every output of the run is written from."""

from __future__ import annotations

from typing import Any


class RunHistory:
    """Metrics per round, keyed by the run's round number (0 = initial model)."""

    def __init__(self, rounds: dict[int, dict[str, Any]] | None = None) -> None:
        self._rounds: dict[int, dict[str, Any]] = {
            int(r): dict(v) for r, v in (rounds or {}).items()
        }

    def record(self, server_round: int, **values: Any) -> None:
        """Set values for a round (later values of the same key win)."""
        row = self._rounds.setdefault(server_round, {"round": server_round})
        row.update(values)

    def add(self, server_round: int, key: str, amount: float) -> None:
        """Accumulate a counter such as bytes for a round."""
        row = self._rounds.setdefault(server_round, {"round": server_round})
        row[key] = row.get(key, 0) + amount

    def row(self, server_round: int) -> dict[str, Any]:
        """A copy of one round's values (empty if the round has none)."""
        return dict(self._rounds.get(server_round, {}))

    def rows(self) -> list[dict[str, Any]]:
        """One dict per round, in round order."""
        return [dict(self._rounds[r]) for r in sorted(self._rounds)]

    def last(self, key: str) -> Any:
        """The value of `key` in the latest round that has it, else None."""
        for r in sorted(self._rounds, reverse=True):
            if self._rounds[r].get(key) is not None:
                return self._rounds[r][key]
        return None

    def total(self, key: str) -> float:
        """Sum of `key` over all rounds."""
        return sum(row.get(key) or 0 for row in self._rounds.values())

    def to_json(self) -> dict[str, dict[str, Any]]:
        return {str(r): row for r, row in self._rounds.items()}
