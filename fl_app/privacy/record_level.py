"""Record-level DP (DP-SGD in each holder's training): what one holder has spent.

Knows no Flower, no Keras and no crypto. A holder with n records trains with Poisson
sampling at rate q = batch_size / n and Gaussian noise `noise_multiplier` (std / clip
bound) for some number of steps in every round it takes part in; its privacy loss is
the composition of all those steps — over rounds, resumed runs and new runs on the same
records, at whatever rate and noise each had — computed with dp-accounting's RDP
accountant for the Poisson-subsampled Gaussian (the DP-SGD analysis of Abadi et al. and
Mironov et al.). The unit is one record of that holder's training split.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import dp_accounting
from dp_accounting.mechanism_calibration import NoBracketIntervalFoundError
from dp_accounting.rdp import rdp_privacy_accountant

ACCOUNTANT = (
    "dp_accounting RDP (integer orders 2..1024), Poisson-subsampled Gaussian per DP-SGD step"
)

# Integer Rényi orders: the accountant's fractional ones below 2 fail to converge at the
# high sampling rates of small holders (and log a warning each); integer orders give an
# upper bound on ε as valid as any, and one fast enough to compute every round.
ORDERS = [*range(2, 65), 80, 96, 128, 192, 256, 512, 1024]


@dataclass(frozen=True)
class Steps:
    """DP-SGD steps taken at one sampling rate and noise multiplier."""

    sampling_rate: float
    noise_multiplier: float
    steps: int


def _accountant() -> rdp_privacy_accountant.RdpAccountant:
    return rdp_privacy_accountant.RdpAccountant(ORDERS)


def _event(history: Iterable[Steps]) -> dp_accounting.DpEvent:
    """One event for all of `history`: equal (rate, noise) runs self-composed, then composed."""
    counts: Counter[tuple[float, float]] = Counter()
    for part in history:
        if part.steps > 0:
            counts[(part.sampling_rate, part.noise_multiplier)] += part.steps
    return dp_accounting.ComposedDpEvent(
        [
            dp_accounting.SelfComposedDpEvent(
                dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), k
            )
            for (q, sigma), k in sorted(counts.items())
        ]
    )


def epsilon_of(history: Iterable[Steps], delta: float) -> float:
    """ε at `delta` after every step of `history` (0 for none; infinity if any had no noise)."""
    if not 0 < delta < 1:
        raise ValueError(f"dp.delta={delta}: allowed 0 < delta < 1")
    taken = [part for part in history if part.steps > 0]
    if not taken:
        return 0.0
    if any(part.noise_multiplier <= 0 for part in taken):
        return math.inf
    accountant = _accountant()
    accountant.compose(_event(taken))
    return float(accountant.get_epsilon(delta))


def spent_epsilon(sampling_rate: float, noise_multiplier: float, steps: int, delta: float) -> float:
    """ε at `delta` after `steps` DP-SGD steps at one rate and noise."""
    return epsilon_of([Steps(sampling_rate, noise_multiplier, steps)], delta)


class BudgetExceeded(ValueError):
    """Training once more would take a holder past its budget (dp.max_epsilon or, without
    one, dp.target_epsilon)."""


@functools.lru_cache(maxsize=64)
def calibrated_noise(
    sampling_rate: float,
    steps: int,
    target_epsilon: float,
    delta: float,
    spent: tuple[Steps, ...] = (),
) -> float:
    """The smallest noise multiplier whose `steps` more steps, after those already `spent`,
    bring the holder to at most `target_epsilon`."""
    if not target_epsilon > 0:
        raise ValueError(f"dp.target_epsilon={target_epsilon}: allowed > 0")
    already = epsilon_of(spent, delta)
    if already >= target_epsilon:
        raise BudgetExceeded(
            f"this holder's records have already spent ε={already:.3g} at δ={delta:g}, "
            f"which reaches dp.target_epsilon={target_epsilon:g}: no noise lets it train "
            "more under that target; refusing to train (raise dp.target_epsilon, or set a "
            "larger dp.max_epsilon with a fixed dp.noise_multiplier, knowing ε only grows)"
        )
    try:
        return float(
            dp_accounting.calibrate_dp_mechanism(
                _accountant,
                lambda sigma: _event([*spent, Steps(sampling_rate, sigma, steps)]),
                target_epsilon,
                delta,
                bracket_interval=dp_accounting.LowerEndpointAndGuess(0.05, 1.0),
            )
        )
    except NoBracketIntervalFoundError as err:
        raise ValueError(
            f"dp.target_epsilon={target_epsilon:g} cannot be calibrated for this holder "
            f"(sampling rate {sampling_rate:.3g}, {steps} steps, δ={delta:g}): even a noise "
            "multiplier of 0.05 spends less; allowed a smaller target (ε above about 100 "
            "bounds nothing useful) or a fixed dp.noise_multiplier"
        ) from err
