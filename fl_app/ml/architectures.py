"""The built-in architectures `task.model` can name (a user's own model is a `.keras`
file or a callable's import path: fl_app.ml.models)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras


def cnn(input_shape: tuple[int, ...], outputs: int, name: str = "cnn") -> keras.Model:
    """A small CNN for 8x8 images (digits)."""
    inputs = keras.Input(shape=tuple(input_shape))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    return _classifier(inputs, x, outputs, name)


def mlp(
    input_shape: tuple[int, ...],
    outputs: int,
    name: str = "mlp",
    hidden: tuple[int, ...] = (32, 16),
) -> keras.Model:
    """Hidden ReLU layers (32, 16 by default) for tabular features."""
    inputs = keras.Input(shape=tuple(input_shape))
    x = keras.layers.Flatten()(inputs)
    for units in hidden:
        x = keras.layers.Dense(units, activation="relu")(x)
    return _classifier(inputs, x, outputs, name)


def wide_mlp(input_shape: tuple[int, ...], outputs: int, name: str = "wide_mlp") -> keras.Model:
    """About 1M parameters on digits: for scale benchmarks."""
    return mlp(input_shape, outputs, name, hidden=(1024, 896))


def regression_mlp(
    input_shape: tuple[int, ...], outputs: int = 1, name: str = "regression_mlp"
) -> keras.Model:
    """The design document's regression MLP: Dense(10, relu) -> Dense(10, relu) -> Dense(1)."""
    inputs = keras.Input(shape=tuple(input_shape))
    x = keras.layers.Dense(10, activation="relu")(inputs)
    x = keras.layers.Dense(10, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(outputs)(x), name=name)


def _classifier(inputs: Any, x: Any, outputs: int, name: str) -> keras.Model:
    return keras.Model(inputs, keras.layers.Dense(outputs, activation="softmax")(x), name=name)


BUILTIN_MODELS: dict[str, Callable[..., keras.Model]] = {
    "cnn": cnn,
    "mlp": mlp,
    "wide_mlp": wide_mlp,
    "regression_mlp": regression_mlp,
    "seed_mlp": regression_mlp,  # its name before issue 24 (older checkpoints name it)
}
