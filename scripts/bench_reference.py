"""The lean reference of `scripts/bench.py`: the same FedAvg as a plain Keras loop in one
process, with no Flower, no serialisation, no workers and no fl_app code in the loop.

Before the loop, fl_app builds what the run would: the model (from the run's config and
seed), every client's partition (train and test splits, preprocessed) and the targets as
the compiled loss takes them. Inside the loop there is only Keras and NumPy: for each
client `set_weights`, the optimizer's variables put back to their fresh values, and
`keras.Model.fit` on the NumPy arrays (same local epochs and batch size, Keras' own
shuffling); a weighted average; and a per-round federated evaluation with
`keras.Model.evaluate` on every client's test split, as the FL loop evaluates. Each
round's wall time and each fit's are reported.
"""

from __future__ import annotations

import time

import numpy as np

from fl_app.config import compose_config
from fl_app.fl.factory import new_model, node_data
from fl_app.ml.models import targets_of


def reference_rounds(overrides: list[str], clients: int, rounds: int) -> dict:
    """Round times, per-client-round fit time and final accuracy of the plain loop."""
    cfg = compose_config([*overrides, f"federation.num_supernodes={clients}"])
    net = new_model(cfg)
    nodes = []
    for pid in range(clients):
        data, _ = node_data(cfg, {"partition-id": pid, "num-partitions": clients})
        nodes.append((data.train.x, targets_of(net, data.train), len(data.train),
                      data.test.x, targets_of(net, data.test), len(data.test)))  # fmt: skip
    epochs, batch = cfg.train.local_epochs, cfg.train.batch_size
    net.optimizer.build(net.trainable_variables)
    fresh = [v.numpy().copy() for v in net.optimizer.variables]
    weights = net.get_weights()

    round_seconds, fit_seconds, accuracy = [], [], float("nan")
    for _ in range(rounds):
        started = time.perf_counter()
        total, summed = 0, [np.zeros_like(w) for w in weights]
        for x, y, n, _, _, _ in nodes:
            net.set_weights(weights)
            for variable, value in zip(net.optimizer.variables, fresh, strict=True):
                variable.assign(value)
            tick = time.perf_counter()
            net.fit(x, y, epochs=epochs, batch_size=batch, shuffle=True, verbose=0)
            fit_seconds.append(time.perf_counter() - tick)
            total += n
            summed = [s + n * w for s, w in zip(summed, net.get_weights(), strict=True)]
        weights = [s / total for s in summed]
        net.set_weights(weights)
        scores = [
            (m, net.evaluate(x, y, batch_size=batch, verbose=0, return_dict=True))
            for _, _, _, x, y, m in nodes
        ]
        accuracy = sum(m * s.get("accuracy", np.nan) for m, s in scores) / sum(m for m, _ in scores)
        round_seconds.append(time.perf_counter() - started)
    return {
        "round_seconds": round_seconds,
        "loop_seconds": sum(round_seconds),
        "after_round1_seconds": sum(round_seconds[1:]),
        "train_seconds_per_client_round": float(np.mean(fit_seconds)),
        "final_accuracy": float(accuracy),
    }
