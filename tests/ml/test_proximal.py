"""FedProx's local training: the compiled loss plus (mu / 2) * ||w - w_start||^2, checked
against a gradient loop written with Keras and TensorFlow alone; mu = 0 is plain fit."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from fl_app.ml.data import Split
from fl_app.ml.dpsgd import ClipAndNoise, train_private
from fl_app.ml.models import train


def small_net(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    x = keras.layers.Dense(6, activation="tanh")(inputs)
    net = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    net.compile(optimizer=keras.optimizers.SGD(0.3), loss="sparse_categorical_crossentropy",
                metrics=["accuracy"])  # fmt: skip
    return net


def data(n: int = 40) -> Split:
    rng = np.random.default_rng(1)
    return Split(rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, 3, n))


def distance(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.sqrt(sum(np.sum((x - y) ** 2) for x, y in zip(a, b, strict=True))))


def test_the_proximal_step_is_the_gradient_of_loss_plus_the_proximal_term_by_hand():
    mu, epochs, batch = 0.7, 2, 16
    split = data()
    net = small_net()
    start = net.get_weights()
    metrics = train(net, split, epochs=epochs, batch_size=batch, seed=3, proximal_mu=mu)

    reference = small_net()  # same initial weights; plain TensorFlow from here on
    anchor = [tf.constant(v) for v in reference.trainable_variables]
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    rng = np.random.default_rng(3)  # train's orders: one permutation per epoch (no random layers)
    for _ in range(epochs):
        order = rng.permutation(len(split.y))
        for begin in range(0, len(order), batch):
            rows = order[begin : begin + batch]
            with tf.GradientTape() as tape:
                loss = loss_fn(split.y[rows], reference(split.x[rows], training=True))
                loss += 0.5 * mu * tf.add_n([
                    tf.reduce_sum(tf.square(v - a))
                    for v, a in zip(reference.trainable_variables, anchor, strict=True)
                ])  # fmt: skip
            grads = tape.gradient(loss, reference.trainable_variables)
            for variable, grad in zip(reference.trainable_variables, grads, strict=True):
                variable.assign_sub(0.3 * grad)
    for got, want in zip(net.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert distance(net.get_weights(), start) > 0
    assert set(metrics) == {"train_loss", "train_accuracy"}
    assert np.isfinite(metrics["train_loss"]) and 0 <= metrics["train_accuracy"] <= 1


def test_mu_zero_is_kerass_own_fit_bit_for_bit_and_a_large_mu_stays_near_the_start():
    split = data()
    plain, fit = small_net(), small_net()
    train(plain, split, epochs=2, batch_size=16, seed=5)  # proximal_mu=0: net.fit
    rng = np.random.default_rng(5)  # the same orders, through Keras' own array path
    for _ in range(2):
        order = rng.permutation(len(split.y))
        fit.fit(split.x[order], split.y[order], epochs=1, batch_size=16, shuffle=False, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(plain.get_weights(), fit.get_weights(),
                                                     strict=True))  # fmt: skip
    start = small_net().get_weights()
    held = small_net()
    train(
        held, split, epochs=2, batch_size=16, seed=5, proximal_mu=3.0
    )  # lr * mu < 2: a stable pull
    assert distance(held.get_weights(), start) < 0.75 * distance(plain.get_weights(), start)


def test_dp_sgd_takes_the_proximal_term_too():
    split = data()
    free, held = small_net(), small_net()
    start = free.get_weights()
    settings = ClipAndNoise(clip_norm=10.0, noise_multiplier=0.0)  # no noise: comparable
    train_private(free, split, settings, epochs=3, batch_size=8)
    train_private(
        held, split, settings, epochs=3, batch_size=8, proximal_mu=3.0
    )  # lr * mu < 2: a stable pull
    assert distance(held.get_weights(), start) < 0.75 * distance(free.get_weights(), start)
