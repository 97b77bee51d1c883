"""Fixtures shared by test modules."""

from __future__ import annotations

import pytest

from fl_app.crypto.keys import build_context, context_from, public_bytes
from fl_app.crypto.presets import get_preset


@pytest.fixture(scope="module")
def keys():
    """The default (seeded) preset, a secret context and its public copy (real keys)."""
    preset = get_preset("seeded")
    secret = build_context(preset)
    return preset, secret, context_from(public_bytes(secret))
