"""What the server does with what clients send back: sizes, metric means, screening."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from flwr.common import EvaluateRes, FitRes, Parameters, Scalar, parameters_to_ndarrays
from flwr.server.client_proxy import ClientProxy

from fl_app.crypto.header import PayloadError
from fl_app.fl.failures import flat, known_cause
from fl_app.fl.protocol import DP_EPSILON, DP_HOLDER, DP_NOISE, DP_STEPS, REFUSED_KEY

Failure = tuple[ClientProxy, FitRes | EvaluateRes] | BaseException


@dataclass
class Screened:
    """A round's fit results after screening: what may be aggregated, and what failed."""

    accepted: list[tuple[ClientProxy, FitRes]]
    failures: list[Failure] = field(default_factory=list)


def payload_bytes(parameters: Parameters) -> int:
    """Bytes of the serialised tensors in `parameters` (protocol overhead excluded)."""
    return sum(len(tensor) for tensor in parameters.tensors)


def weighted_mean_metrics(
    metrics: list[tuple[int, dict[str, Scalar]]],
) -> dict[str, Scalar]:
    """Mean of every numeric metric, weighted by each client's number of examples."""
    total = sum(num for num, _ in metrics)
    if total == 0:
        return {}
    keys = {k for _, m in metrics for k, v in m.items() if isinstance(v, int | float)}
    return {
        key: sum(num * float(m[key]) for num, m in metrics if key in m)
        / sum(num for num, m in metrics if key in m)
        for key in sorted(keys)
    }


HOLDER_KEYS = (DP_EPSILON, DP_STEPS, DP_NOISE, DP_HOLDER)  # what dp.level=record holders report


def split_metrics(
    results: list[tuple[ClientProxy, FitRes]], taken: Callable[[str], bool]
) -> tuple[list[tuple[ClientProxy, FitRes]], list[tuple[str, dict[str, Scalar]]]]:
    """Fit results without the metrics whose key is `taken`, and those metrics by client
    id (for results that had any): what the history keeps apart from the fit means."""
    stripped, split = [], []
    for proxy, res in results:
        own = {k: v for k, v in res.metrics.items() if not taken(k)}
        if len(own) < len(res.metrics):
            split.append((proxy.cid, {k: v for k, v in res.metrics.items() if taken(k)}))
        stripped.append((proxy, replace(res, metrics=own)))
    return stripped, split


def holder_privacy(
    results: list[tuple[ClientProxy, FitRes]],
) -> tuple[list[tuple[ClientProxy, FitRes]], dict[str, Any]]:
    """Fit results without what record-level DP cost their holders, and that cost for
    the run's history: the round's largest ε and every holder's, by the holder id of its
    ledger (stable across runs and restarts; the client id for a holder that sent none).
    An infinite ε (no noise: no bound) is kept as None, with `dp_unbounded`."""
    stripped, split = split_metrics(results, HOLDER_KEYS.__contains__)
    named = [
        (m[DP_HOLDER] if isinstance(m.get(DP_HOLDER), str) else cid, m)
        for cid, m in split
        if _spend(m.get(DP_EPSILON)) is not None  # a report that is no ε is no report
    ]
    spent = {holder: float(m[DP_EPSILON]) for holder, m in named}
    if not spent:
        return stripped, {}
    unbounded = not all(math.isfinite(eps) for eps in spent.values())
    return stripped, {
        "dp_epsilon_max": None if unbounded else max(spent.values()),
        "dp_unbounded": unbounded,
        "dp_holder_epsilon": {h: eps if math.isfinite(eps) else None for h, eps in spent.items()},
        "dp_holder_noise": {holder: _spend(m.get(DP_NOISE)) or 0.0 for holder, m in named},
    }


def _spend(value: Any) -> float | None:
    """`value` as a number >= 0 (infinity allowed), or None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        return None
    return float(value)


def one_per_client(
    results: list[tuple[ClientProxy, FitRes]],
) -> tuple[list[tuple[ClientProxy, FitRes]], list[Failure]]:
    """The first result of each client, and a failure for every further one (a client
    counted twice would weigh twice)."""
    seen: set[str] = set()
    kept, extra = [], []
    for proxy, res in results:
        if proxy.cid in seen:
            extra.append(ValueError(f"client {proxy.cid} rejected: a second result this round"))
        else:
            seen.add(proxy.cid)
            kept.append((proxy, res))
    return kept, extra


def describe_failure(failure: Failure) -> str:
    """A log-safe description of a failed client: who and why, never the payload."""
    if isinstance(failure, BaseException):
        text = str(failure)
        return known_cause(text) or f"{type(failure).__name__}: {flat(text)}"
    proxy, res = failure
    return f"client {proxy.cid}: {res.status.code.name} {res.status.message}"


def screen_plaintext(
    results: list[tuple[ClientProxy, FitRes]],
    failures: list[Failure],
    expected: list[tuple[int, ...]] | None,
    counts: Any = None,
) -> Screened:
    """The results whose update can be averaged; the others as failures, with why
    (with `counts`, an ExampleCounts, also a count unlike the announced one)."""
    screened = Screened(accepted=[], failures=failures)
    for proxy, res in results:
        reason = counts.mismatch(proxy.cid, res.num_examples) if counts is not None else None
        reason = reason or plaintext_problem(res, expected)
        if reason is None:
            screened.accepted.append((proxy, res))
        else:
            screened.failures.append(ValueError(f"client {proxy.cid} rejected: {reason}"))
    return screened


def plaintext_problem(res: FitRes, expected: list[tuple[int, ...]] | None) -> str | None:
    """Why a plaintext update cannot be averaged, or None if it can."""
    if res.num_examples < 1:
        return f"num_examples={res.num_examples}, allowed >= 1"
    try:
        arrays = parameters_to_ndarrays(res.parameters)
    except Exception as err:  # numpy raises several types on bad bytes
        return f"tensors do not parse: {type(err).__name__}"
    shapes = [a.shape for a in arrays]
    if expected is not None and shapes != expected:
        return f"shapes {shapes[:3]}... do not match the model's {expected[:3]}..."
    if not all(np.isfinite(a).all() for a in arrays if np.issubdtype(a.dtype, np.number)):
        return "update contains NaN or infinity"
    return None


def split_refusals(results: list) -> tuple[list, list[Failure]]:
    """Results, and the refusals among them (REFUSED_KEY) as those clients' failures."""
    kept, refusals = [], []
    for proxy, res in results:
        reason = res.metrics.get(REFUSED_KEY)
        if reason is None:
            kept.append((proxy, res))
        else:
            refusals.append(dropped(proxy, f"refused the aggregate it received: {reason}"))
    return kept, refusals


def dropped(proxy: ClientProxy, why: str) -> PayloadError:
    return PayloadError(f"client {proxy.cid} {why}")
