"""Per-example gradient norms and clipped sums for DP-SGD (`fl_app.ml.dpsgd`).

Norms and clipped sum come per layer where a layer allows it (Goodfellow 2015; Lee &
Kifer 2020; "ghost clipping", Li et al. 2021): Dense (inputs of any rank), Conv1D and
Conv2D (channels_last, valid or same padding, one group; their input patches) and
Embedding, of exactly those classes, without LoRA or quantization. During the forward
pass each such layer computes its pre-activation output z itself and records it with
its inputs a; one backward gives every example's dloss/dz, and from a and dloss/dz
come each example's squared norm (without the per-example gradient where that is
cheaper) and the sum of scale_i * a_i^T dloss_i/dz_i. Every other trainable variable
falls back to a vectorised per-example Jacobian (`GradientTape.jacobian` with pfor);
its squares join the same per-example norm, so the clip is still over all variables.
A supported layer's weights must be used only by its own calls: a use outside them
(tied weights) is not seen, so `tied_layers` finds such layers, once per model, and
the trainer gives them the Jacobian.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

logger = logging.getLogger(__name__)


def per_example_loss(net: keras.Model):
    """The compiled loss, one value per example."""
    loss = net.loss
    if isinstance(loss, str):
        return keras.losses.get(loss)
    if isinstance(loss, keras.losses.Loss):
        return type(loss).from_config({**loss.get_config(), "reduction": None})
    if callable(loss):
        return loss
    raise ValueError(f"the model's loss {loss!r} cannot be evaluated per example")


def jacobian(tape: tf.GradientTape, losses: tf.Tensor, variables: list) -> list[tf.Tensor]:
    return tape.jacobian(
        losses, variables, experimental_use_pfor=True,
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )  # fmt: skip


def _jacobian_parts(variables: list, jacobians: list[tf.Tensor]):
    """Each example's squared norm over `variables`, and their scaled sums (the fallback)."""
    flat = [tf.reshape(j, [tf.shape(j)[0], -1]) for j in jacobians]
    squares = tf.add_n([tf.reduce_sum(tf.square(f), axis=1) for f in flat])

    def scaled_sum(scale: tf.Tensor) -> dict[int, tf.Tensor]:
        return {
            id(v): tf.tensordot(scale, j, axes=1) for v, j in zip(variables, jacobians, strict=True)
        }

    return squares, scaled_sum


def gradient_parts(
    tape: tf.GradientTape, losses: tf.Tensor, total: tf.Tensor, taps: list, fallback: list
) -> list[tuple]:
    """(each example's squared norm, scales -> scaled sums) of every recorded layer, and of
    the Jacobian of the `fallback` variables: their squares add up to each example's norm."""
    parts = [_layer_parts(layer, calls) for layer, calls in _calls(tape, total, taps).items()]
    if fallback:
        parts.append(_jacobian_parts(fallback, jacobian(tape, losses, fallback)))
    return parts


_KERNEL_LAYERS = (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D)


def has_layer_norms(layer: keras.layers.Layer) -> bool:
    """Exactly these classes (a subclass may change `call`), every weight trained, no LoRA
    and no quantization: then the layer's inputs and output gradients give its norms."""
    kind = type(layer)
    if kind not in (*_KERNEL_LAYERS, keras.layers.Embedding) or not layer.trainable_weights:
        return False
    if len(layer.trainable_weights) != len(layer.weights) or layer.lora_enabled:
        return False
    if layer.quantization_mode is not None:
        return False
    return kind in (keras.layers.Dense, keras.layers.Embedding) or (
        layer.data_format == "channels_last"
        and layer.groups == 1
        and layer.padding in ("valid", "same")
    )


def _calls(tape: tf.GradientTape, total: tf.Tensor, taps: list) -> dict:
    """Each layer's calls as (inputs, dloss/dz), from one backward: the examples are
    independent, so example i's row of d(sum of losses)/dz is dloss_i/dz_i."""
    if not taps:
        return {}
    outputs = tape.gradient(
        total, [z for _, _, z in taps], unconnected_gradients=tf.UnconnectedGradients.ZERO
    )
    calls: dict[keras.layers.Layer, list] = {}
    for (layer, inputs, _), output in zip(taps, outputs, strict=True):
        calls.setdefault(layer, []).append((inputs, output))
    return calls


@contextlib.contextmanager
def recording(layers: list[keras.layers.Layer]):
    """While open (eager or tracing), each layer's `call` records (layer, inputs, z)."""
    taps: list[tuple] = []
    for layer in layers:  # an instance attribute shadows the class's `call`
        vars(layer)["call"] = functools.partial(_tapped_call, layer, taps)
    try:
        yield taps
    finally:
        for layer in layers:
            vars(layer).pop("call")


def _tapped_call(layer: keras.layers.Layer, taps: list, inputs: Any, *args, **kwargs) -> Any:
    """The layer's own computation, with the pre-activation output z kept."""
    if type(layer) is keras.layers.Embedding:
        inputs = keras.ops.cast(inputs, "int32")
        z = keras.ops.take(layer.embeddings, inputs, axis=0)
        taps.append((layer, inputs, z))
        return keras.ops.cast(z, layer.compute_dtype)
    if type(layer) is keras.layers.Dense:
        z = keras.ops.matmul(inputs, layer.kernel)
    else:
        z = layer.convolution_op(inputs, layer.kernel)
    if layer.bias is not None:
        z = keras.ops.add(z, layer.bias)
    taps.append((layer, inputs, z))
    return z if layer.activation is None else layer.activation(z)


def _layer_parts(layer: keras.layers.Layer, calls: list[tuple]):
    """Each example's squared gradient norm for `layer`'s weights, and a function from
    the per-example scales to their scaled sums; every call's positions count together."""
    grads = tf.concat([_by_example(g) for _, g in calls], axis=1)
    if type(layer) is keras.layers.Embedding:
        ids = tf.concat([tf.reshape(i, [tf.shape(i)[0], -1]) for i, _ in calls], axis=1)
        return _embedding_parts(layer.embeddings, ids, grads)
    if type(layer) is not keras.layers.Dense:
        calls = [(_patches(layer, inputs), g) for inputs, g in calls]
    inputs = tf.concat([_by_example(a) for a, _ in calls], axis=1)
    return _kernel_parts(layer.kernel, layer.bias, inputs, grads)


def _kernel_parts(kernel, bias, a: tf.Tensor, g: tf.Tensor):
    """z = a @ kernel + bias with a [batch, positions, in], g = dloss/dz [.., out]."""
    positions, size = a.shape[1], a.shape[2] * g.shape[2]
    each = None  # each example's kernel gradient, where smaller than its Gram matrices
    if positions is not None and positions * positions <= size:  # ghost norm
        gram = tf.einsum("bti,bsi->bts", a, a) * tf.einsum("bto,bso->bts", g, g)
        squares = tf.reduce_sum(gram, axis=[1, 2])
    else:
        each = tf.einsum("bti,bto->bio", a, g)
        squares = tf.reduce_sum(tf.square(each), axis=[1, 2])
    bias_grads = tf.reduce_sum(g, axis=1)
    if bias is not None:
        squares += tf.reduce_sum(tf.square(bias_grads), axis=1)

    def scaled_sum(scale: tf.Tensor) -> dict[int, tf.Tensor]:
        if each is None:
            kernel_sum = tf.einsum("bti,bto->io", a * scale[:, None, None], g)
        else:
            kernel_sum = tf.tensordot(scale, each, axes=1)
        summed = {id(kernel): tf.reshape(kernel_sum, kernel.shape)}
        if bias is not None:
            summed[id(bias)] = tf.tensordot(scale, bias_grads, axes=1)
        return summed

    return squares, scaled_sum


def _embedding_parts(table, ids: tf.Tensor, g: tf.Tensor):
    """Rows gathered by `ids` [batch, positions]: a repeated id adds its gradients."""
    same = tf.cast(tf.equal(ids[:, :, None], ids[:, None, :]), g.dtype)
    squares = tf.reduce_sum(same * tf.einsum("btd,bsd->bts", g, g), axis=[1, 2])

    def scaled_sum(scale: tf.Tensor) -> dict[int, tf.Tensor]:
        rows = tf.reshape(g * scale[:, None, None], [-1, g.shape[-1]])
        return {
            id(table): tf.math.unsorted_segment_sum(rows, tf.reshape(ids, [-1]), table.shape[0])
        }

    return squares, scaled_sum


def _by_example(t: tf.Tensor) -> tf.Tensor:
    """[batch, positions, features] in float32: the axes between first and last as one."""
    inner = t.shape[1:-1]
    positions = math.prod(inner) if None not in inner else -1
    return tf.reshape(tf.cast(t, tf.float32), [tf.shape(t)[0], positions, t.shape[-1]])


def _patches(layer: keras.layers.Layer, inputs: tf.Tensor) -> tf.Tensor:
    """The input window of each output position, flattened as the kernel is (Conv1D as a
    Conv2D of height 1)."""
    height = (1,) * (2 - layer.rank)
    return tf.image.extract_patches(
        inputs if layer.rank == 2 else inputs[:, None],
        sizes=[1, *height, *layer.kernel_size, 1],
        strides=[1, *height, *layer.strides, 1],
        rates=[1, *height, *layer.dilation_rate, 1],
        padding=layer.padding.upper(),
    )


def tied_layers(
    layers: list[keras.layers.Layer], example_losses: Callable[[], tf.Tensor]
) -> list[keras.layers.Layer]:
    """The `layers` whose weights are also used outside their own calls (tied weights),
    whose per-layer norms would be too small: the unclipped per-layer sum of per-example
    gradients differs from the gradient of the summed `example_losses()`."""
    if not layers:
        return []
    with tf.GradientTape(persistent=True) as tape, recording(layers) as taps:
        losses = example_losses()
        total = tf.reduce_sum(losses)
    calls = _calls(tape, total, taps)
    weights = [v for layer in layers for v in layer.trainable_weights]
    gradients = tape.gradient(total, weights, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    expected = {
        id(v): tf.cast(tf.convert_to_tensor(g), tf.float32).numpy()
        for v, g in zip(weights, gradients, strict=True)
    }  # an Embedding's gradient is IndexedSlices
    atol = 1e-5 * max(float(np.max(np.abs(g), initial=0.0)) for g in expected.values())
    ones = tf.ones_like(losses, tf.float32)
    tied = []
    for layer in layers:
        summed = _layer_parts(layer, calls[layer])[1](ones) if layer in calls else {}
        if not all(
            np.allclose(summed.get(id(v), 0.0), expected[id(v)], rtol=1e-3, atol=atol)
            for v in layer.trainable_weights
        ):
            logger.debug(
                "layer %r: its weights are used outside its own calls (tied weights), so "
                "their per-example gradients come from the Jacobian", layer.name
            )  # fmt: skip
            tied.append(layer)
    return tied
