"""Same seed, same initial weights and the same training draws, whatever else the
process is doing."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np


@contextlib.contextmanager
def initializer_seeds_from(seed: int) -> Iterator[None]:
    """Keras draws the seed of every unseeded initializer from Python's global `random`,
    which the process's other threads draw from too (in simulation, Ray's and Flower's
    beside the ServerApp's), so the initial weights depended on timing. While the block
    runs, Keras draws them from a private generator seeded as `keras.utils.
    set_random_seed(seed)` seeds the global one: the same numbers, undisturbed. (A Keras
    that no longer looks it up there is left as it is; tests/ml/test_seeding.py says so.)"""
    try:
        from keras.src.random import seed_generator  # where Keras 3 looks up `python_random`
    except ImportError:
        seed_generator = None
    shared = getattr(seed_generator, "python_random", None)
    if shared is not random:
        yield
        return
    seed_generator.python_random = random.Random(seed)
    try:
        yield
    finally:
        seed_generator.python_random = shared


def reseed_layers(net: Any, rng: np.random.Generator) -> int:
    """Set the state of every seed generator of `net`'s layers (Dropout, GaussianNoise,
    random augmentation, a user layer's own `keras.random.SeedGenerator`), at any depth,
    in place from `rng`: the same draws for the same `rng`, whatever ran before, and no
    global seed reset (which clears TensorFlow's kernel cache). Returns how many were set.

    Written against Keras 3.x: a layer lists its generators in `_seed_generators` and
    `_flatten_layers` walks nested layers; tests/ml/test_seeding.py fails if either goes.
    """
    generators = [
        generator
        for layer in net._flatten_layers(include_self=True)
        for generator in getattr(layer, "_seed_generators", ())
    ]
    for generator in generators:
        state = generator.state
        seed = int(rng.integers(0, 2**31 - 1))
        state.assign(np.array([seed, 0], dtype=state.dtype))
    return len(generators)
