"""Same seed, same initial weights, even with another thread drawing from `random`."""

from __future__ import annotations

import random
import threading

import numpy as np

from fl_app.ml.models import build_model
from fl_app.ml.objective import Objective

OBJECTIVE = Objective("sparse_categorical_crossentropy", ["accuracy"], "accuracy", True)


def initial_weights() -> list[np.ndarray]:
    net = build_model(
        "cnn", model_args={"input_shape": (8, 8, 1), "outputs": 10}, objective=OBJECTIVE,
        optimizer="adam", learning_rate=0.01, seed=42,
    )  # fmt: skip
    return [w.copy() for w in net.get_weights()]


def test_a_thread_drawing_from_python_random_does_not_change_the_initial_model():
    """In simulation, Ray's and Flower's threads share the ServerApp's process."""
    alone = initial_weights()
    stop = threading.Event()

    def draw() -> None:
        while not stop.is_set():
            random.random()

    neighbour = threading.Thread(target=draw)
    neighbour.start()
    try:
        beside = [initial_weights() for _ in range(3)]
    finally:
        stop.set()
        neighbour.join()
    for weights in beside:
        assert all(np.array_equal(a, b) for a, b in zip(alone, weights, strict=True))
