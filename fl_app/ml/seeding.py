"""Same seed, same initial weights, whatever else the process is doing."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator


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
