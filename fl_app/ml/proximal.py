"""FedProx's local training (Li et al., 2020): the compiled loss plus (mu / 2) *
||w - w_start||^2, with the model's own optimizer and metrics."""

from __future__ import annotations

import weakref
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from fl_app.ml.features import take


class Proximal:
    """FedProx's local training of one model: Keras' own loss, metrics and optimizer,
    plus the proximal term. Its step is traced once per model; mu and the anchor (the
    weights training started from) are variables of it."""

    def __init__(self, net: keras.Model) -> None:
        self.net = net
        self._mu = tf.Variable(0.0, trainable=False, dtype=tf.float32)
        self._anchor = [tf.Variable(v, trainable=False) for v in net.trainable_variables]
        self._step = tf.function(self._step_py, reduce_retracing=True)

    def _step_py(self, x: Any, y: Any) -> tf.Tensor:
        net, variables = self.net, self.net.trainable_variables
        with tf.GradientTape() as tape:
            predicted = net(x, training=True)
            loss = net.compute_loss(x=x, y=y, y_pred=predicted, training=True)
            distance = tf.add_n(
                [tf.reduce_sum(tf.square(v - a)) for v, a in zip(variables, self._anchor,
                                                                 strict=True)]
            )  # fmt: skip
            total = loss + 0.5 * self._mu * distance
        net.optimizer.apply_gradients(zip(tape.gradient(total, variables), variables, strict=True))
        net.compute_metrics(x, y, predicted)
        return loss

    def fit(
        self, x: Any, y: np.ndarray, mu: float, *, orders: list[np.ndarray], batch_size: int
    ) -> dict[str, float]:
        """One pass per order in `orders` (each a permutation of the examples); the last
        pass's mean loss and metrics as `train_<name>`."""
        self._mu.assign(mu)
        for anchor, variable in zip(self._anchor, self.net.trainable_variables, strict=True):
            anchor.assign(variable)
        n = len(y)
        losses: list[float] = []
        for order in orders:
            self.net.reset_metrics()
            losses = []
            for start in range(0, n, batch_size):
                rows = order[start : start + batch_size]
                losses.append(float(self._step(take(x, rows), y[rows])) * len(rows))
        metrics = {
            f"train_{name}": float(value)
            for name, value in self.net.get_metrics_result().items()
            if name != "loss"
        }
        return {"train_loss": sum(losses) / n, **metrics}


_PROXIMAL: weakref.WeakKeyDictionary[keras.Model, Proximal] = weakref.WeakKeyDictionary()


def proximal_for(net: keras.Model) -> Proximal:
    """The FedProx trainer of `net` (built once: its step is traced once)."""
    if net not in _PROXIMAL:
        _PROXIMAL[net] = Proximal(net)
    return _PROXIMAL[net]
