"""FederatedStrategy built as the ServerApp builds it, for strategy tests (imported as
`from strategies import ...`): Flower's FedAvg inside, the plaintext or the HE
aggregator around it, example counts answered from a dict."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.client_manager import SimpleClientManager
from flwr.server.strategy import FedAvg, Strategy

from fl_app.crypto.packing import Layout
from fl_app.fl.example_counts import ExampleCounts
from fl_app.fl.modes import MODES, ServerSetup
from fl_app.fl.protocol import EVAL_EXAMPLES_KEY, EXAMPLES_KEY
from fl_app.fl.results import weighted_mean_metrics
from fl_app.fl.server_keys import ServerKeys
from fl_app.fl.strategy import FederatedStrategy
from fl_app.run.history import RunHistory


def announced_counts(announced: dict[str, int | dict]) -> ExampleCounts:
    """Example counts whose query the clients answer from `announced` (an int n_k gives
    {n_k, max(1, n_k // 4)}; a dict is the answer itself)."""

    def answer(value: int | dict) -> Any:
        if isinstance(value, dict | str):
            return value
        return {EXAMPLES_KEY: value, EVAL_EXAMPLES_KEY: max(1, value // 4)}

    return ExampleCounts(
        lambda rnd, asked, config: {
            p.cid: answer(announced[p.cid]) for p in asked if p.cid in announced
        },
        max_examples=10**6,
    )


def federated(
    mode: str = "none",
    *,
    initial: list[np.ndarray] | None = None,
    counts: ExampleCounts | None = None,
    keys: tuple | None = None,  # (preset, secret, public) for mode="he"
    history: RunHistory | None = None,
    on_round_end: Callable | None = None,
    algorithm: Strategy | None = None,
    min_fit_clients: int = 2,
    evaluation: Any = None,
    round_offset: int = 0,
    **fedavg: Any,
) -> FederatedStrategy:
    """The strategy of a run in privacy `mode`, starting from `initial`."""
    history = history if history is not None else RunHistory()
    parameters = ndarrays_to_parameters(initial) if initial is not None else None
    algorithm = algorithm or FedAvg(
        initial_parameters=parameters,
        min_fit_clients=min_fit_clients,
        fit_metrics_aggregation_fn=weighted_mean_metrics,
        evaluate_metrics_aggregation_fn=weighted_mean_metrics,
        **{"min_available_clients": 1, **fedavg},
    )
    extra = {}
    if keys is not None:
        preset, _, public = keys
        extra = {"keys": ServerKeys(public, preset, "test"), "layout": Layout.of(initial)}
    setup = ServerSetup(algorithm, parameters, False, history, counts, extra)
    return FederatedStrategy(
        algorithm, MODES[mode].aggregator(setup), history=history, counts=counts,
        min_fit_clients=min_fit_clients, on_round_end=on_round_end, evaluation=evaluation,
        round_offset=round_offset,
    )  # fmt: skip


def configured_fit(strategy: FederatedStrategy, proxies: list, rnd: int = 1) -> list:
    """Round `rnd`'s fit instructions, as the round loop makes them: the example
    counts of every connected client asked first, then `configure_fit`."""
    manager = SimpleClientManager()
    for proxy in proxies:
        manager.register(proxy)
    if strategy.counts is not None:
        strategy.counts.learn(rnd, proxies)
    return strategy.configure_fit(rnd, strategy.latest_parameters, manager)


def plain_fedavg(
    *, initial_parameters: Any = None, example_counts: ExampleCounts | None = None, **options
) -> FederatedStrategy:
    """privacy=none, strategy=fedavg, with Flower's FedAvg keyword arguments."""
    initial = None if initial_parameters is None else parameters_to_ndarrays(initial_parameters)
    return federated("none", initial=initial, counts=example_counts, **options)
