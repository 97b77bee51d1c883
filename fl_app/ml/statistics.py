"""Federated statistics for `preprocess: standardize`: the sums each holder contributes,
the global mean and std every holder then scales with, and the model that takes raw
inputs (the user's model behind a Keras `Normalization` layer per scaled input).

A holder's `moments` are [n, sum of x, sum of x^2] per element of every floating-point
input (integer inputs, ids, are never scaled), in sorted input order. Summed over the
holders (under the run's privacy mode: fl_app.fl.statistics), `global_statistics` turns
the total into the `standardise` form of public statistics, so that every holder scales
exactly as if the pooled data's mean and std had been given in the task config.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from fl_app.ml.data import ClientData, Split
from fl_app.ml.features import Features
from fl_app.ml.scaling import standardise

EPSILON = 1e-6  # added to every std, as a holder's own scaling does


def _float_inputs(x: Features) -> dict[str, np.ndarray]:
    items = x.items() if isinstance(x, dict) else [("", x)]
    return {name: a for name, a in sorted(items) if np.asarray(a).dtype.kind == "f"}


def moments(x: Features) -> np.ndarray:
    """[n, sums..., sums of squares...] of the floating-point inputs of `x` (float64)."""
    arrays = [
        np.asarray(a, dtype=np.float64).reshape(len(a), -1) for a in _float_inputs(x).values()
    ]
    if not arrays:
        return np.zeros(1)
    flat = np.concatenate(arrays, axis=1)
    return np.concatenate([[len(flat)], flat.sum(axis=0), (flat**2).sum(axis=0)])


def moments_length(net: keras.Model) -> int:
    """The length of `moments` for the inputs of `net` (what the server expects)."""
    inputs = keras.tree.flatten(net.input)
    sizes = [int(np.prod(t.shape[1:])) for t in inputs if "float" in str(t.dtype)]
    return 1 + 2 * sum(sizes)


def global_statistics(total: np.ndarray, like: Features) -> Any:
    """The summed `moments` as standardise's statistics for inputs shaped like `like`:
    {"mean", "std"} for one array, {input name: {"mean", "std"}} for named inputs."""
    floats = _float_inputs(like)
    count = float(total[0])
    if not count >= 1 or len(total) != 1 + 2 * sum(a[0].size for a in floats.values()):
        raise ValueError(f"federated statistics of {len(total)} values do not fit the data")
    width = (len(total) - 1) // 2
    mean = total[1 : 1 + width] / count
    std = np.sqrt(np.maximum(total[1 + width :] / count - mean**2, 0.0)) + EPSILON
    stats, start = {}, 0
    for name, array in floats.items():
        shape = array.shape[1:]
        size = int(np.prod(shape))
        part = slice(start, start + size)
        stats[name] = {
            "mean": mean[part].reshape(shape).tolist(),
            "std": std[part].reshape(shape).tolist(),
        }
        start += size
    return stats[""] if not isinstance(like, dict) else stats


_SCALED: OrderedDict[tuple, ClientData] = OrderedDict()  # a worker's few nodes and totals


def scaled_with(data: ClientData, total: bytes, values: Callable[[], np.ndarray]) -> ClientData:
    """`data` standardised with the global statistics of the summed moments `values()`
    (decoded once per process, node and `total`: under HE that is a decryption)."""
    key = (id(data), len(data.train), hashlib.sha256(total).hexdigest())
    if key not in _SCALED:
        stats = global_statistics(values(), data.train.x)
        train, test = standardise(data.train.x, data.test.x, stats=stats)
        _SCALED[key] = ClientData(Split(train, data.train.y), Split(test, data.test.y))
        while len(_SCALED) > 16:
            _SCALED.popitem(last=False)
    return _SCALED[key]


def raw_input_model(net: keras.Model, summed_moments: np.ndarray) -> keras.Model:
    """`net` taking raw inputs: behind the global statistics of `summed_moments`."""
    like = keras.tree.map_structure(_one_row, net.input)
    return with_normalization(net, global_statistics(summed_moments, like))


def _one_row(tensor: Any) -> np.ndarray:
    shape = (1, *(d or 1 for d in tensor.shape[1:]))
    text = "string" in str(tensor.dtype)
    return np.full(shape, "", dtype=object) if text else np.zeros(shape, dtype=tensor.dtype)


def with_normalization(net: keras.Model, stats: Any) -> keras.Model:
    """`net` behind a `Normalization` layer per scaled input holding `stats` (the
    `global_statistics` form), so that it takes raw inputs: `predict(raw)` gives what
    `net` gives on the standardised inputs."""
    structure = net.input
    named = isinstance(structure, dict)
    specs = structure if named else {"": structure}
    raw, scaled = {}, {}
    for name, spec in specs.items():
        shape = tuple(spec.shape[1:])
        raw[name] = keras.Input(shape, dtype=spec.dtype, name=name or "raw_input")
        given = stats.get(name) if named else stats
        if given is None or "float" not in str(spec.dtype):
            scaled[name] = raw[name]
            continue
        mean = np.broadcast_to(np.asarray(given["mean"], np.float32), shape)
        std = np.broadcast_to(np.asarray(given["std"], np.float32), shape)
        layer = keras.layers.Normalization(
            axis=tuple(range(1, len(shape) + 1)) or None, mean=mean, variance=std**2,
            name=f"federated_statistics{'_' + name if name else ''}",
        )  # fmt: skip
        scaled[name] = layer(raw[name])
    outputs = net(scaled if named else scaled[""])
    return keras.Model(raw if named else raw[""], outputs, name=f"{net.name}_raw_inputs")
