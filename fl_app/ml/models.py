"""Keras 3 models: a built-in architecture (fl_app.ml.architectures), a user's model by
import path or `.keras` file, compiled from the task's objective; local training and
evaluation."""

from __future__ import annotations

import functools
import math
import random
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from fl_app.ml.architectures import BUILTIN_MODELS
from fl_app.ml.checks import TaskError, check_builder_arguments, check_text_inputs
from fl_app.ml.data import Split
from fl_app.ml.features import Features, describe, take
from fl_app.ml.objective import Objective
from fl_app.ml.proximal import proximal_for
from fl_app.ml.seeding import initializer_seeds_from, reseed_layers
from fl_app.ml.sources import resolve
from fl_app.ml.targets import ONE_HOT_LOSSES, one_hot


# ---------------------------------------------------------------- building
def build_model(
    model: str,
    *,
    model_args: Mapping[str, Any],
    objective: Objective,
    optimizer: str,
    learning_rate: float,
    seed: int,
) -> keras.Model:
    """The task's model, compiled from `objective` unless it came compiled; same seed,
    same initial weights.

    `model` is a built-in architecture's name, a path to a `.keras` file, or the import
    path of a callable that returns a `keras.Model` (called with `model_args`).
    """
    keras.utils.set_random_seed(seed)
    with initializer_seeds_from(seed):
        if model.endswith(".keras"):
            net = keras.saving.load_model(Path(model).expanduser())
        else:
            builder = BUILTIN_MODELS.get(model) or resolve(model)
            check_builder_arguments(model, builder, model_args)
            net = builder(**model_args)
    if not isinstance(net, keras.Model):
        raise TaskError(f"task.model={model!r} returned {type(net).__name__}, not a keras.Model")
    if not net.weights:  # the global model's weights must exist before any data is seen
        raise TaskError(
            f"task.model={model!r} returned a model without weights (not built): give it an "
            "Input, or call it once on an example in your function, e.g. `model(np.zeros((1, 4)))`"
        )
    if not net.compiled:
        net.compile(
            optimizer=_optimizer(optimizer, learning_rate),
            loss=objective.loss,
            metrics=list(objective.metrics),
        )
    return net


def check_fits(net: keras.Model, data: Split, *, dry_run: bool = False) -> None:
    """Fail before training, naming the key, when `net` and `data` cannot work together.

    Checks the examples against the model's inputs (shapes; names for named inputs) and
    integer labels against its output units; with `dry_run`, evaluating two examples also
    checks that Keras knows the loss and metric names (it would otherwise fail only in
    the first fit).
    """
    _check_inputs(net, data.x)
    units = _output_units(net, data.x)
    if np.issubdtype(data.y.dtype, np.integer) and len(data):  # labels, not values
        classes = int(data.y.max()) + 1
        allowed = 2 if units == 1 else units
        if classes > allowed:
            raise ValueError(
                f"task.model has {units} output unit(s), allowed labels 0..{allowed - 1}; "
                f"the data's labels go up to {classes - 1}"
            )
    if not dry_run:
        return
    try:
        evaluate(net, data.take(slice(0, 2)), batch_size=2)
    except ValueError as err:  # Keras names the unknown identifier
        raise ValueError(f"task.objective: {err}") from err


def _check_inputs(net: keras.Model, x: Features) -> None:
    """The data's example shapes (and input names) against a functional model's inputs;
    a subclassed model declares none and is checked by running it."""
    if not getattr(net, "inputs", None):
        return
    expected = {t.name: tuple(t.shape[1:]) for t in net.inputs}
    given = (
        {name: tuple(array.shape[1:]) for name, array in x.items()}
        if isinstance(x, dict)
        else {net.inputs[0].name: tuple(x.shape[1:])} if len(expected) == 1 else {}
    )  # fmt: skip
    if given.keys() != expected.keys():
        raise ValueError(
            f"task.model takes the named inputs {sorted(expected)}; the data gives "
            f"{sorted(given) if isinstance(x, dict) else 'one array'} (map columns to "
            "inputs with source_args.inputs)"
        )
    check_text_inputs(net.inputs, x)
    for name, shape in expected.items():
        if not _shape_fits(shape, given[name]):
            where = f"input {name!r} " if len(expected) > 1 else ""
            raise ValueError(
                f"task.model {where}takes examples of shape {shape}; the data's are "
                f"{given[name]} ({describe(x)})"
            )


def _shape_fits(expected: tuple, given: tuple) -> bool:
    return len(expected) == len(given) and all(
        e in (None, g) for e, g in zip(expected, given, strict=False)
    )


def _output_units(net: keras.Model, x: Features) -> int:
    """The model's output units: declared by a functional model, else from one example."""
    if getattr(net, "outputs", None):
        return int(net.outputs[0].shape[-1])
    try:
        return int(net(take(x, slice(0, 1))).shape[-1])
    except Exception as err:  # a subclassed model's own error, named
        raise ValueError(
            f"task.model cannot run on the data's examples ({describe(x)}): "
            f"{type(err).__name__}: {err}"
        ) from err


def _optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    raise ValueError(f"optimizer={name!r} is unknown: allowed ['adam', 'sgd']")


# ---------------------------------------------------------------- local work
_FRESH_OPTIMIZER: weakref.WeakKeyDictionary[keras.Model, list[np.ndarray]] = (
    weakref.WeakKeyDictionary()
)


def reset_optimizer(net: keras.Model) -> None:
    """Put `net`'s optimizer back in the state of a freshly compiled model (step 0, no
    moments) without recompiling, so a model reused across calls trains exactly as a
    new one would and Keras keeps its traced train and test functions."""
    fresh = _FRESH_OPTIMIZER.get(net)
    if fresh is None:
        net.optimizer.build(net.trainable_variables)
        _FRESH_OPTIMIZER[net] = [np.array(v.numpy(), copy=True) for v in net.optimizer.variables]
        return
    for variable, value in zip(net.optimizer.variables, fresh, strict=True):
        variable.assign(value)


def train(
    net: keras.Model,
    data: Split,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    proximal_mu: float = 0.0,
) -> dict[str, float]:
    """Train in place; return the last epoch's loss and metrics as `train_<name>`.

    `seed` decides everything random in the call: each epoch's order of the examples and
    the state of the model's random layers (dropout, noise, augmentation), both drawn
    from one NumPy generator; and NumPy's and Python's global generators are seeded with
    it too, as `keras.utils.set_random_seed` did, for code that draws from them after
    training (SecAgg+'s stochastic rounding of the update, a user's callback).
    TensorFlow's global seed is not reset: that clears its kernel cache, which cost
    every fit of the digits CNN about 90 ms (docs/benchmarks.md).

    With `proximal_mu` > 0 (FedProx), the loss minimised is the compiled one plus
    (mu / 2) * ||w - w_start||^2 over the trainable weights; the loss reported is the
    compiled one.
    """
    random.seed(seed)
    np.random.seed(seed)
    rng = np.random.default_rng(seed)
    reseed_layers(net, rng)
    y = targets_of(net, data)
    orders = [rng.permutation(len(y)) for _ in range(epochs)]
    if proximal_mu > 0:
        return proximal_for(net).fit(data.x, y, proximal_mu, orders=orders, batch_size=batch_size)
    history = net.fit(
        epoch_batches(data.x, y, orders, batch_size),
        epochs=epochs,
        steps_per_epoch=math.ceil(len(y) / batch_size),
        shuffle=False,  # the orders are in the batches
        verbose=0,
    )
    return {f"train_{name}": float(values[-1]) for name, values in history.history.items()}


def epoch_batches(
    x: Features, y: np.ndarray, orders: list[np.ndarray], batch_size: int
) -> tf.data.Dataset:
    """The batches of every epoch in turn, epoch k's examples in `orders[k]`, as one
    dataset (fit with `steps_per_epoch` reads on across epochs). Keras' own array path
    builds an index-shuffling pipeline each call and costs more than the training of a
    small holder (docs/benchmarks.md)."""
    epochs = [
        tf.data.Dataset.from_tensor_slices((take(x, order), y[order])).batch(batch_size)
        for order in orders
    ]
    return functools.reduce(tf.data.Dataset.concatenate, epochs)


def evaluate(net: keras.Model, data: Split, *, batch_size: int) -> dict[str, float]:
    """Loss and every compiled metric of `net` on `data`, by name."""
    batches = tf.data.Dataset.from_tensor_slices((data.x, targets_of(net, data)))
    results = net.evaluate(batches.batch(batch_size), verbose=0, return_dict=True)
    return {name: float(value) for name, value in results.items()}


def targets_of(net: keras.Model, data: Split) -> np.ndarray:
    """The labels as the compiled loss takes them: one-hot rows for a one-hot loss."""
    loss = net.loss
    name = loss if isinstance(loss, str) else getattr(loss, "name", getattr(loss, "__name__", ""))
    if name in ONE_HOT_LOSSES and data.y.ndim == 1 and np.issubdtype(data.y.dtype, np.integer):
        return one_hot(data.y, _output_units(net, data.x))
    return data.y


def weights_of(net: keras.Model) -> list[np.ndarray]:
    """The model's weights as float32 arrays, in layer order."""
    return [np.asarray(w, dtype=np.float32) for w in net.get_weights()]
