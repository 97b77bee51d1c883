"""The JSON header that opens every encrypted payload, and the checks on it.

It names the preset, scheme and key fingerprint, the model's layout, the number of
ciphertexts that follow, for an aggregate its total weight, and for a client update
what it was made for (`bound_to`: run and round), so that a replayed one is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fl_app.crypto.packing import Layout, spans
from fl_app.crypto.presets import Preset

FORMAT_VERSION = 1
MAX_HEADER_BYTES = 256 * 1024


class PayloadError(ValueError):
    """A payload is malformed or does not belong to this run; the message says why."""


@dataclass(frozen=True)
class Header:
    preset: str
    scheme: str
    fingerprint: str
    layout: Layout
    count: int
    total_weight: float | None = None  # set on aggregates only
    bound_to: str = ""  # what a client update was made for (e.g. "<run>/<round>")

    def to_bytes(self) -> bytes:
        data: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "preset": self.preset,
            "scheme": self.scheme,
            "fingerprint": self.fingerprint,
            "layout": self.layout.to_json(),
            "count": self.count,
        }
        if self.total_weight is not None:
            data["total_weight"] = self.total_weight
        if self.bound_to:
            data["bound_to"] = self.bound_to
        return json.dumps(data).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Header:
        if len(raw) > MAX_HEADER_BYTES:
            raise PayloadError(f"header of {len(raw)} bytes exceeds {MAX_HEADER_BYTES}")
        try:
            data = json.loads(raw.decode())
            if data["version"] != FORMAT_VERSION:
                raise PayloadError(f"payload format version {data['version']!r} is unsupported")
            total = data.get("total_weight")
            return cls(
                preset=str(data["preset"]),
                scheme=str(data["scheme"]),
                fingerprint=str(data["fingerprint"]),
                layout=Layout.from_json(data["layout"]),
                count=int(data["count"]),
                total_weight=None if total is None else float(total),
                bound_to=str(data.get("bound_to", "")),
            )
        except PayloadError:
            raise
        except (
            UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError,
            RecursionError,  # b"[" * 50000: JSON nested past Python's stack
            OverflowError,  # 1e400 read as infinity where an integer belongs
        ) as err:  # fmt: skip
            raise PayloadError(f"header is not valid: {type(err).__name__}") from err


def check_header(header: Header, preset: Preset, key_fingerprint: str, layout: Layout) -> None:
    """Refuse a header of another key, preset or layout, or with the wrong count. The
    fingerprint is what the header *claims*: a forged one cannot be told apart here."""
    if header.fingerprint != key_fingerprint:
        raise PayloadError(
            f"encrypted under key {header.fingerprint!r}, expected {key_fingerprint!r}"
        )
    if (header.preset, header.scheme) != (preset.name, preset.scheme):
        raise PayloadError(
            f"preset {header.preset!r}/{header.scheme!r}, "
            f"expected {preset.name!r}/{preset.scheme!r}"
        )
    if header.layout != layout:
        raise PayloadError("layout does not match the model's")
    expected = len(spans(layout, preset))
    if header.count != expected:
        raise PayloadError(f"header announces {header.count} ciphertexts, expected {expected}")
