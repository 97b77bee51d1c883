"""DP-SGD for a compiled Keras model on the TensorFlow backend (knows no Flower).

No maintained DP-SGD fits Keras 3 on TensorFlow: tensorflow-privacy pins TensorFlow
<= 2.15 and Keras 2, jax-privacy's Keras API needs the JAX backend. So this is the
smallest step that is DP-SGD (Abadi et al., 2016), the accounting left to dp-accounting:

- batches are Poisson samples: each record joins a step with probability q =
  batch_size / n, independently (the sampling the accountant assumes), drawn from OS
  entropy; an epoch is round(n / batch_size) steps;
- each example's gradient is clipped to L2 norm <= clip_norm over all variables
  together, the clipped ones are summed, Gaussian noise of std noise_multiplier *
  clip_norm (OS entropy) is added to every coordinate, and the sum is divided by the
  expected batch size q * n; the model's optimizer applies it.

Norms and clipped sum come per layer where a layer allows it, and from a per-example
Jacobian for every other variable (`fl_app.ml.per_example`; `DPSGD(net,
per_layer=False)` takes the Jacobian for every variable).

Models that DP-SGD cannot bound are refused before they train: a layer that mixes the
examples of a batch (BatchNormalization's batch statistics, at any depth: in a nested
model, a custom layer or a subclassed model), and, by what it does, any model whose
forward pass in training changes a weight that is sent with the update but not trained
by the noisy step (BatchNormalization's moving statistics, or a user's own counters):
such a weight moves without noise and leaves the holder with the model.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from fl_app.ml.data import Split
from fl_app.ml.features import num_rows, take
from fl_app.ml.models import targets_of
from fl_app.ml.per_example import (
    gradient_parts,
    has_layer_norms,
    jacobian,
    per_example_loss,
    recording,
    tied_layers,
)
from fl_app.ml.per_record import refuse_batch_mixing, refuse_untrained_state


@dataclass(frozen=True)
class ClipAndNoise:
    """A clipping bound (of one record's gradient under DP-SGD, of a client's update
    under client-level DP) and the noise multiplier: noise std / clip_norm."""

    clip_norm: float
    noise_multiplier: float

    def __post_init__(self) -> None:
        if not self.clip_norm > 0:
            raise ValueError(f"dp.clip_norm={self.clip_norm}: allowed > 0")
        if not self.noise_multiplier >= 0:
            raise ValueError(f"dp.noise_multiplier={self.noise_multiplier}: allowed >= 0")


def steps_per_epoch(num_records: int, batch_size: int) -> int:
    """Poisson steps that draw `num_records` examples in expectation."""
    return max(1, round(num_records / batch_size))


def sampling_rate(num_records: int, batch_size: int) -> float:
    return min(1.0, batch_size / num_records)


class DPSGD:
    """Trains `net` with DP-SGD; `train` returns the number of noisy steps it took.

    One per model (`dpsgd_for`): its traced step is reused, the bound and the noise are
    variables of it, so a new setting does not retrace. With `per_layer=False` every
    variable's per-example gradient comes from the Jacobian (the reference path).
    """

    def __init__(self, net: keras.Model, *, per_layer: bool = True) -> None:
        refuse_batch_mixing(net)
        self.net = net
        layers = net._flatten_layers(include_self=False, recursive=True)
        self._plan([layer for layer in layers if per_layer and has_layer_norms(layer)])
        self._clip_norm = tf.Variable(1.0, trainable=False, dtype=tf.float32)
        self._noise_std = tf.Variable(0.0, trainable=False, dtype=tf.float32)
        self._loss = per_example_loss(net)
        self._noise = tf.random.Generator.from_non_deterministic_state()
        # FedProx: mu * (w - anchor) joins the noisy gradient (no data in it: no privacy cost)
        self._mu = tf.Variable(0.0, trainable=False, dtype=tf.float32)
        self._anchor = [
            tf.Variable(v, trainable=False, name="proximal_anchor") for v in net.trainable_variables
        ]
        self._apply = tf.function(self._apply_py, reduce_retracing=True)
        self._checked = False

    def _plan(self, per_layer: list[keras.layers.Layer]) -> None:
        """`per_layer` give their norms per layer, every other variable the Jacobian; the
        steps that depend on it are traced anew."""
        self._per_layer = per_layer
        covered = {id(v) for layer in per_layer for v in layer.trainable_weights}
        self._fallback = [v for v in self.net.trainable_variables if id(v) not in covered]
        self._clipped_sum = tf.function(self._clipped_sum_py, reduce_retracing=True)
        self._step = tf.function(self._step_py, reduce_retracing=True)

    def _check(self, x: Any, y: Any) -> None:
        """Once, before the first noisy step: refuse untrained state, and give the Jacobian
        to a layer whose weights are used outside its own calls (its norm would be short)."""
        refuse_untrained_state(self.net, x)
        tied = tied_layers(self._per_layer, lambda: self._example_losses(x, y))
        if tied:
            self._plan([layer for layer in self._per_layer if layer not in tied])
        self._checked = True

    def _example_losses(self, x: Any, y: Any) -> tf.Tensor:
        """[batch]: each example's loss (a mean over its other axes, as Keras weighs them)."""
        losses = self._loss(y, self.net(x, training=True))
        return tf.reduce_mean(tf.reshape(losses, [tf.shape(losses)[0], -1]), axis=1)

    def per_example_gradients(self, x: Any, y: Any) -> list[tf.Tensor]:
        """[batch, *variable shape] for every trainable variable (the Jacobian)."""
        with tf.GradientTape() as tape:
            losses = self._example_losses(x, y)
        return jacobian(tape, losses, self.net.trainable_variables)

    def _clipped_sum_py(self, x: Any, y: Any, mask: tf.Tensor) -> list[tf.Tensor]:
        persistent = bool(self._per_layer and self._fallback)
        with tf.GradientTape(persistent=persistent) as tape, recording(self._per_layer) as taps:
            losses = self._example_losses(x, y)
            total = tf.reduce_sum(losses)
        parts = gradient_parts(tape, losses, total, taps, self._fallback)
        norms = tf.sqrt(tf.maximum(tf.add_n([squares for squares, _ in parts]), 0.0))
        scale = mask * tf.minimum(1.0, self._clip_norm / tf.maximum(norms, 1e-12))
        summed = {key: s for _, scaled_sum in parts for key, s in scaled_sum(scale).items()}
        return [summed.get(id(v), tf.zeros(v.shape, v.dtype)) for v in self.net.trainable_variables]

    def noisy_mean(self, summed: list[tf.Tensor], expected_batch: float) -> list[tf.Tensor]:
        """Sum plus N(0, (noise_multiplier * clip_norm)^2) per coordinate, / batch."""
        return [
            (s + self._noise.normal(tf.shape(s), stddev=self._noise_std, dtype=s.dtype))
            / expected_batch
            for s in summed
        ]

    def configure(self, settings: ClipAndNoise) -> None:
        self._clip_norm.assign(settings.clip_norm)
        self._noise_std.assign(settings.noise_multiplier * settings.clip_norm)

    def _apply_py(self, summed: list[tf.Tensor], expected_batch: tf.Tensor) -> None:
        variables = self.net.trainable_variables
        noisy = [
            g + self._mu * (v - a)
            for g, v, a in zip(self.noisy_mean(summed, expected_batch), variables, self._anchor,
                               strict=True)
        ]  # fmt: skip
        self.net.optimizer.apply_gradients(zip(noisy, variables, strict=True))

    def _step_py(self, x: Any, y: Any, mask: tf.Tensor, expected_batch: tf.Tensor) -> None:
        self._apply_py(self._clipped_sum_py(x, y, mask), expected_batch)

    def train(
        self,
        x: Any,
        y: np.ndarray,
        settings: ClipAndNoise,
        *,
        epochs: int,
        batch_size: int,
        proximal_mu: float = 0.0,
    ) -> int:
        """Run epochs x steps_per_epoch noisy steps over `x`, `y`; return the steps.
        With `proximal_mu`, FedProx's term pulls the weights towards where they started."""
        self.configure(settings)
        self._mu.assign(proximal_mu)
        for anchor, variable in zip(self._anchor, self.net.trainable_variables, strict=True):
            anchor.assign(variable)
        n = num_rows(x)
        if not self._checked:  # before the first noisy step, on the holder's own data
            self._check(take(x, slice(0, min(n, 8))), y[: min(n, 8)])
        q = sampling_rate(n, batch_size)
        capacity = capacity_for(batch_size)
        rng = np.random.default_rng()  # OS entropy: a known sample would weaken the bound
        steps = epochs * steps_per_epoch(n, batch_size)
        expected = tf.constant(q * n, tf.float32)
        for _ in range(steps):
            chosen = np.flatnonzero(rng.random(n) < q)
            parts = [
                _padded(chosen[i : i + capacity], capacity)
                for i in range(0, len(chosen) or 1, capacity)
            ]
            if len(parts) == 1:
                rows, mask = parts[0]
                self._step(take(x, rows), y[rows], mask, expected)
                continue
            summed = None
            for rows, mask in parts:
                grads = self._clipped_sum(take(x, rows), y[rows], mask)
                summed = (
                    grads if summed is None else [a + b for a, b in zip(summed, grads, strict=True)]
                )
            self._apply(summed, expected)
        return steps


def capacity_for(batch_size: int) -> int:
    """Rows of the padded batch: a fixed shape keeps one trace, and a Poisson sample
    larger than this (4 standard deviations above the mean) goes in several parts."""
    return batch_size + 4 * math.ceil(math.sqrt(batch_size)) + 1


_TRAINERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def dpsgd_for(net: keras.Model) -> DPSGD:
    """The DP-SGD trainer of `net` (built once: its step is traced once)."""
    if net not in _TRAINERS:
        _TRAINERS[net] = DPSGD(net)
    return _TRAINERS[net]


def train_private(
    net: keras.Model,
    data: Split,
    settings: ClipAndNoise,
    *,
    epochs: int,
    batch_size: int,
    proximal_mu: float = 0.0,
) -> int:
    """Train `net` in place on `data` with DP-SGD; the number of noisy steps taken."""
    return dpsgd_for(net).train(
        data.x,
        targets_of(net, data),
        settings,
        epochs=epochs,
        batch_size=batch_size,
        proximal_mu=proximal_mu,
    )


def _padded(rows: np.ndarray, capacity: int) -> tuple[np.ndarray, tf.Tensor]:
    """`rows` padded to `capacity` (with row 0), and the mask of the real ones."""
    mask = np.zeros(capacity, np.float32)
    mask[: len(rows)] = 1.0
    return np.concatenate([rows, np.zeros(capacity - len(rows), np.int64)]), tf.constant(mask)
