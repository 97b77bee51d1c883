"""Keras 3 models for the bundled tasks, and local training/evaluation."""

from __future__ import annotations

import keras
import numpy as np

from fl_app.ml.data import NUM_CLASSES, Split, input_shape


def build_model(
    task: str, model: str, *, optimizer: str, learning_rate: float, seed: int
) -> keras.Model:
    """A compiled model for `task`; same seed, same initial weights."""
    keras.utils.set_random_seed(seed)
    num_classes = NUM_CLASSES[task]
    inputs = keras.Input(shape=input_shape(task))
    if model == "cnn":
        x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(64, activation="relu")(x)
    elif model == "mlp":
        x = keras.layers.Flatten()(inputs)
        x = keras.layers.Dense(32, activation="relu")(x)
        x = keras.layers.Dense(16, activation="relu")(x)
    elif model == "wide_mlp":  # about 1M parameters on digits: for scale benchmarks
        x = keras.layers.Flatten()(inputs)
        x = keras.layers.Dense(1024, activation="relu")(x)
        x = keras.layers.Dense(896, activation="relu")(x)
    else:
        raise ValueError(f"model={model!r} is unknown: allowed ['cnn', 'mlp', 'wide_mlp']")
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    net = keras.Model(inputs, outputs, name=f"{task}_{model}")
    net.compile(
        optimizer=_optimizer(optimizer, learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return net


def _optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    raise ValueError(f"optimizer={name!r} is unknown: allowed ['adam', 'sgd']")


def train(
    net: keras.Model, data: Split, *, epochs: int, batch_size: int, seed: int
) -> dict[str, float]:
    """Train in place; return the last epoch's loss and accuracy."""
    keras.utils.set_random_seed(seed)
    history = net.fit(data.x, data.y, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0)
    return {
        "train_loss": float(history.history["loss"][-1]),
        "train_accuracy": float(history.history["accuracy"][-1]),
    }


def evaluate(net: keras.Model, data: Split, *, batch_size: int) -> tuple[float, float]:
    """Loss and accuracy of `net` on `data`."""
    loss, accuracy = net.evaluate(data.x, data.y, batch_size=batch_size, verbose=0)
    return float(loss), float(accuracy)


def weights_of(net: keras.Model) -> list[np.ndarray]:
    """The model's weights as float32 arrays, in layer order."""
    return [np.asarray(w, dtype=np.float32) for w in net.get_weights()]
