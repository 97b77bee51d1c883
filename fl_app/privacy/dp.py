"""Differential privacy for model updates: clipping, Gaussian noise and the accountant.

Knows neither Flower nor Keras: an update is a list of numpy arrays. The mechanism is
DP-FedAvg's (McMahan et al., 2018) with the noise split across clients, as in
distributed DP under secure aggregation:

- each client clips its update (trained weights minus the global weights it started
  from) to L2 norm `clip_norm` over all layers together, and adds Gaussian noise with
  standard deviation `noise_multiplier * clip_norm / sqrt(m)`, where m is the number of
  clients sampled in the round;
- the aggregate is the unweighted mean of the clipped, noised updates, so the sum of the
  m noise terms has standard deviation `noise_multiplier * clip_norm`, the sensitivity
  of the sum to one client being `clip_norm`;
- when only s < m updates are aggregated, the released mean carries
  `noise_multiplier * sqrt(s / m)` of noise per unit of sensitivity; the accountant is
  told exactly that for that round.

The privacy spent over the released rounds is computed by Google's `dp-accounting`
(privacy-loss distributions), one Poisson-subsampled Gaussian event per round.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

ACCOUNTANT = "dp_accounting PLD, Poisson-subsampled Gaussian per round"


class ClipAndNoise(Protocol):
    """A clipping bound and a noise multiplier (fl_app.ml.dpsgd.ClipAndNoise, checked)."""

    clip_norm: float
    noise_multiplier: float


def global_norm(arrays: Sequence[np.ndarray]) -> float:
    """L2 norm of all arrays taken together as one vector."""
    return math.sqrt(sum(float(np.sum(np.square(a, dtype=np.float64))) for a in arrays))


def clip(update: Sequence[np.ndarray], clip_norm: float) -> list[np.ndarray]:
    """`update` scaled down, if needed, so that its global L2 norm is at most `clip_norm`."""
    norm = global_norm(update)
    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    return [np.asarray(a, dtype=np.float64) * scale for a in update]


def privatize(
    start: Sequence[np.ndarray],
    trained: Sequence[np.ndarray],
    settings: ClipAndNoise,
    *,
    clients: int,
    rng: np.random.Generator | None = None,
) -> list[np.ndarray]:
    """`start` plus the clipped, noised update `trained - start`, in `trained`'s dtypes.

    `clients` is the number of clients sampled in the round; each adds 1/sqrt(clients)
    of the noise. `rng` defaults to one seeded by the OS: noise drawn from a seed the
    config names could be subtracted by anyone who knows the config.
    """
    if clients < 1:
        raise ValueError(f"clients={clients}: allowed >= 1")
    if [a.shape for a in start] != [a.shape for a in trained]:
        raise ValueError("start and trained weights differ in shape")
    rng = rng if rng is not None else np.random.default_rng()
    update = clip(
        [np.subtract(t, s, dtype=np.float64) for s, t in zip(start, trained, strict=True)],
        settings.clip_norm,
    )
    std = settings.noise_multiplier * settings.clip_norm / math.sqrt(clients)
    return [
        (np.asarray(s, dtype=np.float64) + u + rng.normal(0.0, std, size=u.shape)).astype(t.dtype)
        for s, u, t in zip(start, update, trained, strict=True)
    ]


@dataclass(frozen=True)
class RoundRelease:
    """One released aggregate, as the accountant sees it."""

    sampling_rate: float  # clients sampled / clients available
    noise_multiplier: float  # noise std / sensitivity of the released sum

    @classmethod
    def of(
        cls, *, sampled: int, available: int, aggregated: int, noise_multiplier: float
    ) -> RoundRelease:
        """The release of a round where `aggregated` of `sampled` updates were summed."""
        if not 1 <= aggregated <= sampled <= available:
            raise ValueError(
                f"need 1 <= aggregated ({aggregated}) <= sampled ({sampled}) "
                f"<= available ({available})"
            )
        return cls(
            sampling_rate=sampled / available,
            noise_multiplier=noise_multiplier * math.sqrt(aggregated / sampled),
        )


def epsilon(releases: Sequence[RoundRelease], delta: float) -> float:
    """ε at `delta` spent by `releases` (0 for none; infinity if one had no noise)."""
    if not 0 < delta < 1:
        raise ValueError(f"delta={delta}: allowed 0 < delta < 1")
    if not releases:
        return 0.0
    if any(r.noise_multiplier <= 0 for r in releases):
        return math.inf
    import dp_accounting
    from dp_accounting.pld import pld_privacy_accountant

    accountant = pld_privacy_accountant.PLDAccountant()
    for release, count in sorted(Counter(releases).items(), key=lambda kv: repr(kv[0])):
        event = dp_accounting.GaussianDpEvent(release.noise_multiplier)
        if release.sampling_rate < 1:
            event = dp_accounting.PoissonSampledDpEvent(release.sampling_rate, event)
        accountant.compose(event, count)
    return float(accountant.get_epsilon(delta))
