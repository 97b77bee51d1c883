"""Fixtures shared by test modules."""

from __future__ import annotations

import pytest

from fl_app.crypto._tenseal import ts
from fl_app.crypto.keys import build_context, public_bytes
from fl_app.crypto.presets import get_preset


@pytest.fixture(scope="module")
def keys():
    """The compact preset, a secret context and its public copy (real TenSEAL keys)."""
    preset = get_preset("compact")
    secret = build_context(preset)
    return preset, secret, ts.context_from(public_bytes(secret))
