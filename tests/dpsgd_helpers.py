"""A small model and the DP-SGD step's noiseless clipped sum, for record-level DP tests
(imported as `from dpsgd_helpers import ...`)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def small_model(batch_norm: bool = False) -> keras.Model:
    inputs = keras.Input((4,))
    x = keras.layers.Dense(5, activation="tanh")(inputs)
    if batch_norm:
        x = keras.layers.BatchNormalization()(x)
    net = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    net.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return net


def clipped(trainer, x, y, keep):
    mask = tf.constant(np.asarray(keep, np.float32))
    return [g.numpy() for g in trainer._clipped_sum(x, y, mask)]


def norm(arrays):
    return float(np.sqrt(sum(np.sum(np.square(a)) for a in arrays)))
