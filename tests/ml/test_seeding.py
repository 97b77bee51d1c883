"""Same seed, same initial weights, even with another thread drawing from `random`; same
seed, same fit, without resetting TensorFlow's global seed."""

from __future__ import annotations

import random
import threading

import keras
import numpy as np
import tensorflow as tf

from fl_app.ml.data import Split
from fl_app.ml.models import build_model, reset_optimizer, train
from fl_app.ml.objective import Objective
from fl_app.ml.seeding import reseed_layers

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


def dropout_net() -> keras.Model:
    """Dropout at the top, inside a nested model, and inside a user's own layer."""

    class Noisy(keras.layers.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.generator = keras.random.SeedGenerator(0)

        def call(self, x, training=False):
            return (
                x + keras.random.normal(keras.ops.shape(x), seed=self.generator) if training else x
            )

    inner = keras.Sequential([keras.Input((6,)), keras.layers.Dense(6), keras.layers.Dropout(0.3)])
    inputs = keras.Input((4,))
    x = keras.layers.Dropout(0.2)(keras.layers.Dense(6, activation="relu")(inputs))
    x = Noisy()(inner(x))
    net = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return net


def split(n: int = 50) -> Split:
    rng = np.random.default_rng(2)
    return Split(rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, 3, n))


def trained(net: keras.Model, start: list[np.ndarray], seed: int) -> list[np.ndarray]:
    net.set_weights(start)
    reset_optimizer(net)
    train(net, split(), epochs=2, batch_size=8, seed=seed)
    return net.get_weights()


def test_a_fit_is_decided_by_its_seed_alone_random_layers_at_any_depth_included():
    net = dropout_net()
    assert reseed_layers(net, np.random.default_rng(0)) == 3  # every generator, nested too
    start = net.get_weights()
    first = trained(net, start, seed=7)
    after_first = np.random.random(3)  # what SecAgg+'s stochastic rounding draws next
    trained(net, start, seed=8)  # other draws in between: generators and orders advance
    keras.random.uniform((3,))
    np.random.default_rng().random(5)
    again = trained(net, start, seed=7)
    assert np.array_equal(np.random.random(3), after_first)
    other = trained(net, start, seed=8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_training_resets_no_tensorflow_seed(monkeypatch):
    """Resetting TensorFlow's global seed clears its kernel cache: ~90 ms every fit."""

    def refuse(seed):
        raise AssertionError(f"TensorFlow's global seed was reset to {seed} during training")

    net = dropout_net()
    monkeypatch.setattr(keras.utils, "set_random_seed", refuse)
    monkeypatch.setattr(tf.random, "set_seed", refuse)
    trained(net, net.get_weights(), seed=1)
