"""The physical-limit reference of `scripts/bench.py`: the same FedAvg as a plain Keras
loop in one process, with no Flower, no serialisation, no workers.

Same model (built once, from the run's config and seed), same data and partitions, same
local epochs, batch size and per-client seeds, and a per-round federated evaluation on
every client's local test split, as the FL loop does. Between clients the weights are
set and the optimizer reset, as the ClientApp does. Each round's wall time is reported.
"""

from __future__ import annotations

import time

import numpy as np

from fl_app.config import compose_config
from fl_app.fl.factory import new_model, node_data
from fl_app.ml.models import evaluate, reset_optimizer, train, weights_of


def reference_rounds(overrides: list[str], clients: int, rounds: int) -> dict:
    """Round times, per-client-round train time and final accuracy of the plain loop."""
    cfg = compose_config([*overrides, f"federation.num_supernodes={clients}"])
    nodes = [
        node_data(cfg, {"partition-id": pid, "num-partitions": clients}) for pid in range(clients)
    ]
    net = new_model(cfg)
    weights = weights_of(net)
    epochs, batch = int(cfg.train.local_epochs), int(cfg.train.batch_size)
    round_seconds, train_seconds, accuracy = [], [], None
    for rnd in range(1, rounds + 1):
        started = time.perf_counter()
        updates = []
        for data, seed in nodes:
            net.set_weights(weights)
            reset_optimizer(net)
            tick = time.perf_counter()
            train(net, data.train, epochs=epochs, batch_size=batch, seed=seed + rnd)
            train_seconds.append(time.perf_counter() - tick)
            updates.append((len(data.train), weights_of(net)))
        total = sum(n for n, _ in updates)
        weights = [sum(n * w[i] for n, w in updates) / total for i in range(len(weights))]
        net.set_weights(weights)
        results = [(len(d.test), evaluate(net, d.test, batch_size=batch)) for d, _ in nodes]
        accuracy = sum(n * r.get("accuracy", np.nan) for n, r in results) / sum(
            n for n, _ in results
        )
        round_seconds.append(time.perf_counter() - started)
    return {
        "round_seconds": round_seconds,
        "loop_seconds": sum(round_seconds),
        "after_round1_seconds": sum(round_seconds[1:]),
        "train_seconds_per_client_round": float(np.mean(train_seconds)),
        "final_accuracy": float(accuracy),
    }
