"""What per-record DP (DP-SGD) needs of a model: no layer that mixes the examples of a
batch, and no untrained state a forward pass changes (it would leave without noise)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

# Layers whose training-time output for one example depends on the others in the batch.
BATCH_MIXING = (keras.layers.BatchNormalization,)


def _layers(net: keras.Model):
    """Every sublayer at any depth: of nested models, custom layers and subclassed models."""
    return net._flatten_layers(include_self=False, recursive=True)


def refuse_batch_mixing(net: keras.Model) -> None:
    """ValueError naming a layer whose output mixes the examples of a batch."""
    for layer in _layers(net):
        if isinstance(layer, BATCH_MIXING):
            raise ValueError(
                f"layer {layer.name!r} ({type(layer).__name__}) computes batch statistics, "
                "which put every example of a batch into the others' gradients: per-record "
                "DP (dp.level=record) needs a model without it (e.g. LayerNormalization or "
                "GroupNormalization instead)"
            )


def refuse_untrained_state(net: keras.Model, x: Any) -> None:
    """ValueError naming the non-trainable weights that a training-mode forward pass on
    `x` changes (they would leave the holder without noise); the weights are restored."""
    saved = [w.numpy().copy() for w in net.non_trainable_weights]
    net(x, training=True)
    moved = [
        w.path
        for w, before in zip(net.non_trainable_weights, saved, strict=True)
        if not np.array_equal(w.numpy(), before)
    ]
    for w, before in zip(net.non_trainable_weights, saved, strict=True):
        w.assign(before)
    if moved:
        raise ValueError(
            f"training changes the model's non-trainable weights {moved[:5]} without noise, "
            "and they are sent with the update: per-record DP (dp.level=record) cannot bound "
            "them; use a model whose forward pass updates no state (e.g. LayerNormalization "
            "or GroupNormalization instead of BatchNormalization)"
        )
