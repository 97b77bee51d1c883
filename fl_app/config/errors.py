"""The one error a bad configuration raises, and the check that words it."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and what is allowed."""


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    """Raise ConfigError naming `key`, its `value` and what is `allowed` unless `ok`."""
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: allowed {allowed}")
