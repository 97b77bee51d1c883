"""The DP guarantee of a run's released global models, for summary.json."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from fl_app.config.schema import DPConfig
from fl_app.privacy import record_level
from fl_app.privacy.dp import ACCOUNTANT, RoundRelease, epsilon


def privacy_report(
    rounds: Iterable[Mapping[str, Any]],
    dp: DPConfig,
    *,
    min_fit_clients: int,
    server_sees_individual_updates: bool,
) -> dict[str, Any]:
    """ε at `dp.delta` over the rounds whose aggregate was released, and its inputs.

    `rounds` are the run's per-round records (metrics.json rows).
    """
    if dp.level == "record":
        return record_report(rounds, dp)
    noise = dp.noise_multiplier
    releases = []
    for row in rounds:
        if row.get("fit_clients", 0) < max(1, min_fit_clients):
            continue  # nothing was released this round
        # (rows of checkpoints older than these counters: every sampled client answered)
        sampled = int(row.get("fit_sampled", row["fit_clients"] + row.get("fit_failures", 0)))
        releases.append(
            RoundRelease.of(
                sampled=sampled,
                available=int(row.get("fit_available", sampled)),
                aggregated=int(row["fit_clients"]),
                noise_multiplier=noise,
            )
        )
    spent = epsilon(releases, dp.delta)
    return {
        "epsilon": spent if math.isfinite(spent) else None,  # None: no noise, no bound
        "bounded": math.isfinite(spent),
        "delta": dp.delta,
        "clip_norm": dp.clip_norm,
        "noise_multiplier": noise,
        "released_rounds": len(releases),
        "sampling_rates": [r.sampling_rate for r in releases],
        "effective_noise_multipliers": [r.noise_multiplier for r in releases],
        "accountant": ACCOUNTANT,
        "unit": "one client (its whole data set), so also any one record",
        # Under plaintext FedAvg the server sees each update with 1/sqrt(m) of the noise.
        "server_sees_individual_updates": server_sees_individual_updates,
    }


RECORD_UNIT = (
    "adding or removing one record of one holder's training split (DP-SGD in each "
    "holder's training); each holder's example count n is treated as public"
)
RECORD_NOT_COVERED = (
    "the holders' example counts (FedAvg weights; they set q and the number of steps)",
    "federated evaluation on each holder's local test split (loss and metrics)",
    "which records fall in the training split (the split depends on the data)",
    "timing and participation",
    "a record held by two holders counts as two records",
)


def record_report(rounds: Iterable[Mapping[str, Any]], dp: DPConfig) -> dict[str, Any]:
    """Record-level DP: the ε each holder's records have spent, as the holders reported
    it with their updates (each holder accounts for every step in its own ledger, across
    runs, resumes and restarts), by holder id, and the largest."""
    per_holder: dict[str, float | None] = {}
    noise: dict[str, float] = {}
    per_round = []
    for row in rounds:
        spent = row.get("dp_holder_epsilon") or {}
        per_holder.update(spent)  # a holder's latest is its total: ε only grows
        noise.update(row.get("dp_holder_noise") or {})
        if spent:
            per_round.append({"round": row["round"], "epsilon_max": row.get("dp_epsilon_max")})
    bounded = bool(per_holder) and all(eps is not None for eps in per_holder.values())
    return {
        "level": "record",
        "epsilon": max(per_holder.values()) if bounded else None,  # the largest any holder spent
        "bounded": bounded,  # false: a holder trained without noise (or none trained)
        "delta": dp.delta,
        "clip_norm": dp.clip_norm,
        "noise_multiplier": dp.noise_multiplier if dp.target_epsilon <= 0 else None,
        "target_epsilon": dp.target_epsilon or None,
        "max_epsilon": dp.max_epsilon or None,
        "per_holder_epsilon": per_holder,
        "per_holder_noise_multiplier": noise,
        "per_round": per_round,
        "accountant": record_level.ACCOUNTANT,
        "unit": RECORD_UNIT,
        "not_covered": list(RECORD_NOT_COVERED),
    }
