"""Flatten model weights into one vector, cut it into ciphertext-sized spans, and back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fl_app.crypto.backends import backend_for
from fl_app.crypto.presets import Preset


@dataclass(frozen=True)
class Layout:
    """Shapes and dtypes of a list of arrays: the manifest shipped with every payload."""

    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]

    @classmethod
    def of(cls, arrays: list[np.ndarray]) -> Layout:
        return cls(tuple(tuple(a.shape) for a in arrays), tuple(str(a.dtype) for a in arrays))

    @property
    def sizes(self) -> list[int]:
        return [int(np.prod(shape, dtype=np.int64)) for shape in self.shapes]

    @property
    def length(self) -> int:
        """Number of values in all arrays together."""
        return sum(self.sizes)

    def flatten(self, arrays: list[np.ndarray]) -> np.ndarray:
        """One float64 vector of all arrays, in order."""
        if Layout.of(arrays).shapes != self.shapes:
            raise ValueError(
                f"arrays with shapes {Layout.of(arrays).shapes} do not fit layout {self.shapes}"
            )
        if not arrays:
            return np.zeros(0, dtype=np.float64)
        return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])

    def unflatten(self, flat: np.ndarray) -> list[np.ndarray]:
        """The arrays back, in their shapes and dtypes."""
        if flat.shape != (self.length,):
            raise ValueError(f"vector of shape {flat.shape} does not fit length {self.length}")
        bounds = np.cumsum([0, *self.sizes])
        return [
            flat[start:end].reshape(shape).astype(dtype)
            for start, end, shape, dtype in zip(
                bounds[:-1], bounds[1:], self.shapes, self.dtypes, strict=True
            )
        ]

    def to_json(self) -> dict[str, Any]:
        return {"shapes": [list(s) for s in self.shapes], "dtypes": list(self.dtypes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Layout:
        shapes = tuple(tuple(int(d) for d in s) for s in data["shapes"])
        dtypes = tuple(str(d) for d in data["dtypes"])
        if len(shapes) != len(dtypes) or any(d < 0 for s in shapes for d in s):
            raise ValueError("layout shapes and dtypes do not match")
        return cls(shapes, dtypes)


def spans(layout: Layout, preset: Preset) -> list[tuple[int, int]]:
    """(start, length) of each ciphertext's values within the flat vector: the weights,
    then one more value, the weight slot (index `layout.length`).

    Every payload carries its sender's aggregation weight n_k / R encrypted in the weight
    slot, so an aggregate's slot decrypts to its true total weight, whatever a header
    claims. Dense packing fills every ciphertext across layer boundaries; per-layer
    packing (NVIDIA FLARE's layout) starts a new ciphertext at every layer, the weight
    slot after the last layer's values.
    """
    slots = backend_for(preset).slots(preset)
    if preset.packing == "dense":
        blocks = [(0, layout.length + 1)]
    else:
        starts = np.cumsum([0, *layout.sizes])[:-1]
        blocks = [(int(s), n) for s, n in zip(starts, layout.sizes, strict=True) if n > 0]
        last_start, last_size = blocks.pop() if blocks else (0, 0)
        blocks.append((last_start, last_size + 1))
    return [
        (start + offset, min(slots, size - offset))
        for start, size in blocks
        for offset in range(0, size, slots)
    ]
