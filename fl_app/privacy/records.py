"""Record-level DP (DP-SGD in each holder's training): what one holder has spent.

Knows no Flower, no Keras and no crypto. A holder with n records trains with Poisson
sampling at rate q = batch_size / n and Gaussian noise `noise_multiplier` (std / clip
bound) for some number of steps in every round it takes part in; its privacy loss is
the composition of those steps, computed with dp-accounting's RDP accountant for the
Poisson-subsampled Gaussian (the DP-SGD analysis of Abadi et al. and Mironov et al.).
The unit is one record of that holder.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import dp_accounting
from dp_accounting.rdp import rdp_privacy_accountant

ACCOUNTANT = (
    "dp_accounting RDP (integer orders 2..1024), Poisson-subsampled Gaussian per DP-SGD step"
)

# Integer Rényi orders: the accountant's fractional ones below 2 fail to converge at the
# high sampling rates of small holders (and log a warning each); integer orders give an
# upper bound on ε as valid as any, and one fast enough to compute every round.
ORDERS = [*range(2, 65), 80, 96, 128, 192, 256, 512, 1024]


def _accountant() -> rdp_privacy_accountant.RdpAccountant:
    return rdp_privacy_accountant.RdpAccountant(ORDERS)


def _event(sampling_rate: float, noise_multiplier: float, steps: int) -> dp_accounting.DpEvent:
    step = dp_accounting.PoissonSampledDpEvent(
        sampling_rate, dp_accounting.GaussianDpEvent(noise_multiplier)
    )
    return dp_accounting.SelfComposedDpEvent(step, steps)


def spent_epsilon(sampling_rate: float, noise_multiplier: float, steps: int, delta: float) -> float:
    """ε at `delta` after `steps` DP-SGD steps (0 for none; infinity without noise)."""
    if not 0 < delta < 1:
        raise ValueError(f"dp.delta={delta}: allowed 0 < delta < 1")
    if steps <= 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    accountant = _accountant()
    accountant.compose(_event(sampling_rate, noise_multiplier, steps))
    return float(accountant.get_epsilon(delta))


@functools.lru_cache(maxsize=64)
def calibrated_noise(
    sampling_rate: float, steps: int, target_epsilon: float, delta: float
) -> float:
    """The smallest noise multiplier whose `steps` steps spend at most `target_epsilon`."""
    if not target_epsilon > 0:
        raise ValueError(f"dp.target_epsilon={target_epsilon}: allowed > 0")
    return float(
        dp_accounting.calibrate_dp_mechanism(
            _accountant,
            lambda sigma: _event(sampling_rate, sigma, steps),
            target_epsilon,
            delta,
            bracket_interval=dp_accounting.LowerEndpointAndGuess(0.05, 1.0),
        )
    )


class BudgetExceeded(ValueError):
    """Training once more would take a holder past dp.max_epsilon."""


@dataclass(frozen=True)
class HolderLedger:
    """The DP-SGD steps one holder has taken, and what they cost it."""

    sampling_rate: float
    noise_multiplier: float
    delta: float
    steps: int = 0

    @property
    def epsilon(self) -> float:
        return spent_epsilon(self.sampling_rate, self.noise_multiplier, self.steps, self.delta)

    def after(self, steps: int, max_epsilon: float = 0.0) -> HolderLedger:
        """The ledger after `steps` more; BudgetExceeded if that passes `max_epsilon` (> 0)."""
        later = HolderLedger(
            self.sampling_rate, self.noise_multiplier, self.delta, self.steps + steps
        )
        if max_epsilon > 0 and later.epsilon > max_epsilon:
            raise BudgetExceeded(
                f"this round would take the holder's records to ε={later.epsilon:.3g} at "
                f"δ={self.delta:g}, past dp.max_epsilon={max_epsilon:g} (spent so far "
                f"ε={self.epsilon:.3g} in {self.steps} steps); refusing to train"
            )
        return later
