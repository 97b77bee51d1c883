"""DP-SGD's per-layer norms ("ghost clipping"): for every kind of model, the clipped sum
equals the per-example Jacobian's and a plain loop of one GradientTape per example, with
bounds that clip some examples and not others, and padded rows that count for nothing;
a layer whose weights are also used outside its calls (tied) takes the Jacobian."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf
from dpsgd_helpers import clipped

from fl_app.ml.architectures import cnn, mlp
from fl_app.ml.dpsgd import DPSGD, ClipAndNoise, dpsgd_for

ROWS = 10
KEEP = np.r_[np.ones(7), 0.0, 1.0, 0.0]  # rows 7 and 9 are padding


class Scale(keras.layers.Layer):
    """A custom layer with a weight of its own: not a supported layer."""

    def build(self, shape):
        self.w = self.add_weight(shape=shape[-1:], initializer="ones", name="w")

    def call(self, x):
        return x * self.w


class MyDense(keras.layers.Dense):
    """A subclass may change `call`: it takes the Jacobian."""


def compiled(inputs, outputs) -> keras.Model:
    net = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="out")(outputs))
    net.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return net


def digits_cnn():
    net = cnn((8, 8, 1), 10)
    net.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return net, np.random.default_rng(0).normal(size=(ROWS, 8, 8, 1))


def dense_mlp():
    net = mlp((6,), 3)
    net.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return net, np.random.default_rng(0).normal(size=(ROWS, 6))


def dense_on_sequences():  # Dense on [batch, 5, 4] and on [batch, 2, 5, 6]
    inputs = keras.Input((5, 4))
    x = keras.layers.Dense(6, activation="tanh")(inputs)
    x = keras.layers.Dense(6, activation="tanh")(keras.layers.Reshape((1, 5, 6))(x))
    return compiled(inputs, keras.layers.Flatten()(x)), np.random.default_rng(0).normal(
        size=(ROWS, 5, 4)
    )


def embedding():
    inputs = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(11, 4)(inputs)
    net = compiled(inputs, keras.layers.GlobalAveragePooling1D()(x))
    ids = np.random.default_rng(0).integers(0, 5, (ROWS, 6))  # 6 ids from 5: repeats
    return net, ids


def convolutions():  # Conv1D dilated, Conv2D strided with same padding
    inputs = keras.Input((9, 3))
    x = keras.layers.Conv1D(4, 3, dilation_rate=2, activation="relu")(inputs)
    x = keras.layers.Reshape((5, 4, 1))(x)
    x = keras.layers.Conv2D(3, (3, 2), strides=2, padding="same")(x)
    return compiled(inputs, keras.layers.Flatten()(x)), np.random.default_rng(0).normal(
        size=(ROWS, 9, 3)
    )


def mixed_with_fallback():  # supported layers next to ones that take the Jacobian
    inputs = keras.Input((4,))
    shared = keras.layers.Dense(4, activation="tanh", name="shared")  # called twice
    x = shared(keras.layers.LayerNormalization(name="norm")(shared(inputs)))
    x = MyDense(5, name="subclassed")(Scale(name="scale")(x))
    x = keras.layers.Dense(6, lora_rank=2, name="lora")(x)
    return compiled(inputs, x), np.random.default_rng(0).normal(size=(ROWS, 4))


class TiedOutput(keras.layers.Layer):
    """Class probabilities from another layer's weight, read outside that layer's calls
    (tied weights, as a language model's output shares its input embedding)."""

    def __init__(self, source: keras.layers.Layer, **kwargs):
        super().__init__(**kwargs)
        self.source = source

    def call(self, x):
        source = self.source
        weight = source.embeddings if type(source) is keras.layers.Embedding else source.kernel
        return keras.ops.softmax(keras.ops.matmul(x, keras.ops.transpose(weight)))


def tied_embedding():  # 11 classes from the Embedding's table
    inputs = keras.Input((6,), dtype="int32")
    table = keras.layers.Embedding(11, 4, name="table")
    x = keras.layers.GlobalAveragePooling1D()(table(inputs))
    outputs = TiedOutput(table)(keras.layers.Dense(4, activation="tanh", name="hidden")(x))
    return keras.Model(inputs, outputs), np.random.default_rng(0).integers(0, 11, (ROWS, 6))


def tied_kernel():  # 5 classes from the transposed kernel of "tied"
    inputs = keras.Input((4,))
    tied = keras.layers.Dense(6, activation="tanh", name="tied")
    x = tied(keras.layers.Dense(5, activation="tanh", name="hidden")(inputs))
    x0 = np.random.default_rng(0).normal(size=(ROWS, 4)).astype(np.float32)
    return keras.Model(inputs, TiedOutput(tied)(x)), x0


MODELS = [digits_cnn, dense_mlp, dense_on_sequences, embedding, convolutions,
          mixed_with_fallback]  # fmt: skip


@pytest.fixture(params=MODELS, ids=lambda build: build.__name__)
def case(request):
    keras.utils.set_random_seed(0)
    net, x = request.param()
    x = x.astype(np.float32) if x.dtype.kind == "f" else x
    x[KEEP == 0] *= 1 if x.dtype.kind == "i" else 50.0  # padding that would dominate
    y = np.random.default_rng(1).integers(0, net.output_shape[-1], ROWS)
    return net, x, y


def looped(net, x, y, clip):
    """One tape per kept example: its gradient, clipped over all variables, summed."""
    summed = [np.zeros(v.shape, np.float32) for v in net.trainable_variables]
    norms = []
    for i in np.flatnonzero(KEEP):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(
                keras.losses.sparse_categorical_crossentropy(
                    y[i : i + 1], net(x[i : i + 1], training=True)
                )
            )
        grads = [
            tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, net.trainable_variables)
        ]
        norms.append(np.sqrt(sum(np.sum(np.square(g)) for g in grads)))
        summed = [s + min(1.0, clip / norms[-1]) * g for s, g in zip(summed, grads, strict=True)]
    return summed, np.array(norms)


def test_the_clipped_sum_equals_the_jacobian_and_a_loop_over_examples(case):
    net, x, y = case
    _, norms = looped(net, x, y, 1.0)
    clip = float(np.median(norms))  # some clipped, some not
    assert (norms > clip * 1.01).any() and (norms < clip * 0.99).any()
    expected, _ = looped(net, x, y, clip)
    per_layer, jacobian = DPSGD(net), DPSGD(net, per_layer=False)
    for trainer in (per_layer, jacobian):
        trainer.configure(ClipAndNoise(clip, 0.0))
    by_layer, by_jacobian = clipped(per_layer, x, y, KEEP), clipped(jacobian, x, y, KEEP)
    for mine, theirs, loop in zip(by_layer, by_jacobian, expected, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(mine, loop, rtol=1e-4, atol=1e-6)


def test_supported_layers_take_no_jacobian_and_the_others_do():
    keras.utils.set_random_seed(0)
    net, _ = digits_cnn()
    assert DPSGD(net)._fallback == []
    mixed, _ = mixed_with_fallback()
    trainer = DPSGD(mixed)
    assert {v.path.split("/")[0] for v in trainer._fallback} == {"norm", "scale", "subclassed",
                                                                 "lora"}  # fmt: skip
    assert [layer.name for layer in trainer._per_layer] == ["shared", "out"]


def jacobian_ops(trainer, x, y) -> list[str]:
    graph = trainer._clipped_sum.get_concrete_function(x, y, tf.ones(len(y))).graph
    return [op.name for op in graph.get_operations() if op.name.startswith("loop_body")]


def test_dpsgd_takes_per_layer_norms_by_default():
    keras.utils.set_random_seed(0)
    net, x = digits_cnn()
    x, y = x.astype(np.float32), np.zeros(ROWS, np.int64)
    assert jacobian_ops(dpsgd_for(net), x, y) == []
    assert jacobian_ops(DPSGD(net, per_layer=False), x, y) != []  # the check can see it


def test_per_layer_training_takes_the_planned_steps():
    keras.utils.set_random_seed(0)
    net, x = embedding()
    before = [v.numpy().copy() for v in net.trainable_variables]
    y = np.zeros(ROWS, np.int64)
    assert DPSGD(net).train(x, y, ClipAndNoise(1.0, 1.0), epochs=2, batch_size=5) == 4
    assert all(
        not np.allclose(a, v.numpy()) for a, v in zip(before, net.trainable_variables, strict=True)
    )


@pytest.mark.parametrize("build", [tied_embedding, tied_kernel])
def test_a_layer_whose_weights_are_used_outside_its_calls_takes_the_jacobian(build, caplog):
    keras.utils.set_random_seed(0)
    net, x = build()
    net.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    tied = net.layers[-1].source.name
    y = np.random.default_rng(1).integers(0, net.output_shape[-1], ROWS)
    unchecked, checked = DPSGD(net), DPSGD(net)
    with caplog.at_level(logging.DEBUG, logger="fl_app.ml.per_example"):
        checked.train(x, y, ClipAndNoise(1.0, 0.0), epochs=1, batch_size=ROWS)  # checks once
    assert f"layer {tied!r}: its weights are used outside its own calls" in caplog.text
    assert [layer.name for layer in checked._per_layer] == ["hidden"]
    assert {v.path.split("/")[0] for v in checked._fallback} == {tied}
    _, norms = looped(net, x, y, 1.0)
    clip = float(np.median(norms))
    expected, _ = looped(net, x, y, clip)
    for trainer in (unchecked, checked):
        trainer.configure(ClipAndNoise(clip, 0.0))
    for mine, loop in zip(clipped(checked, x, y, KEEP), expected, strict=True):
        np.testing.assert_allclose(mine, loop, rtol=1e-4, atol=1e-6)
    short = zip(clipped(unchecked, x, y, KEEP), expected, strict=True)  # the per-layer norm misses
    assert not all(np.allclose(mine, loop, rtol=1e-4, atol=1e-6) for mine, loop in short)


def test_the_check_keeps_layers_that_only_their_own_calls_use(case):
    net, x, y = case  # "shared" is called twice: its calls see both uses
    trainer = DPSGD(net)
    per_layer = list(trainer._per_layer)
    trainer.train(x, y, ClipAndNoise(1.0, 0.0), epochs=1, batch_size=ROWS)
    assert trainer._per_layer == per_layer
