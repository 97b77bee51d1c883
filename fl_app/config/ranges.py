"""Every numeric parameter's allowed range, declared beside its schema field, and the one
walk over a composed config that checks them all and refuses keys the schema lacks.

    local_epochs: int = ranged(2, low=1)
    learning_rate: float = ranged(0.005, low=0, low_open=True)
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fl_app.config.errors import ConfigError, require


@dataclass(frozen=True)
class Range:
    """A closed or open interval; either end may be absent. Values must also be finite."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self, integer: bool) -> str:
        kind = "an integer" if integer else "a number"
        low, high = _show(self.low), _show(self.high)
        if self.low is not None and self.high is not None:
            if integer and not (self.low_open or self.high_open):
                return f"{kind} in {low}..{high}"
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{kind} in {left}{low}, {high}{right}"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {low}"
        if self.high is not None:
            return f"{kind} {'<' if self.high_open else '<='} {high}"
        return f"{kind}, finite"


def _show(bound: float | None) -> str:
    if bound is None:
        return ""
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def ranged(default: Any, **bounds: Any) -> Any:
    """A dataclass field with `default` whose value must lie in `Range(**bounds)`."""
    return field(default=default, metadata={"range": Range(**bounds)})


def check_schema(cfg: DictConfig, schema: type) -> None:
    """Refuse a key `schema` does not have (naming the nearest one) and a number outside
    its field's declared range, for every field of every nested schema."""
    known = list(_dotted_keys(schema, cfg))
    _walk(cfg, schema, "", known)


def _node_schema(node: DictConfig, declared: type) -> type:
    """The dataclass a node was composed from (e.g. a strategy's own subclass)."""
    actual = OmegaConf.get_type(node)
    is_sub = isinstance(actual, type) and dataclasses.is_dataclass(actual)
    return actual if is_sub and issubclass(actual, declared) else declared


def _nested(schema: type) -> dict[str, Any]:
    hints = typing.get_type_hints(schema)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(schema)}


def _dotted_keys(schema: type, node: Any, prefix: str = "") -> typing.Iterator[str]:
    for name, (_, hint) in _nested(schema).items():
        key = f"{prefix}{name}"
        yield key
        child = node.get(name) if isinstance(node, DictConfig) else None
        if dataclasses.is_dataclass(hint) and isinstance(child, DictConfig):
            yield from _dotted_keys(_node_schema(child, hint), child, f"{key}.")


def _walk(node: DictConfig, schema: type, prefix: str, known: list[str]) -> None:
    fields = _nested(schema)
    for name in node:
        key = f"{prefix}{name}"
        if name not in fields:
            near = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise ConfigError(f"{key} is not a parameter of fl_app (docs: configuration){hint}")
        spec, hint_type = fields[name]
        if OmegaConf.is_missing(node, name):
            raise ConfigError(
                f"{key} has no value: allowed to set it (e.g. {key}=...), not to remove it "
                f"(an override '~{key}' removes it)"
            )
        value = node[name]
        if dataclasses.is_dataclass(hint_type) and isinstance(value, DictConfig):
            _walk(value, _node_schema(value, hint_type), f"{key}.", known)
        elif "range" in spec.metadata and value is not None:
            _check_range(key, value, spec.metadata["range"], hint_type is int)


def _check_range(key: str, value: Any, allowed: Range, integer: bool) -> None:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    require(number and allowed.contains(float(value)), key, value, allowed.describe(integer))
