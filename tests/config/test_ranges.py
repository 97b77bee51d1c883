"""Issue 12, config: every numeric field's range is declared beside it and checked; a key
the schema lacks is refused with the nearest one. The walk below covers every field."""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest

from fl_app.config import ConfigError, compose_config, load_config
from fl_app.config.ranges import Range
from fl_app.config.schema import AppConfig, PrivacyConfig, SecAggConfig


def ranged_fields(schema: type = AppConfig, prefix: str = ""):
    """(dotted key, Range, is_int, default) of every ranged field, nested schemas included
    (the privacy group through its largest schema, SecAgg+'s)."""
    hints = typing.get_type_hints(schema)
    for spec in dataclasses.fields(schema):
        hint = hints[spec.name]
        if hint is PrivacyConfig:
            hint = SecAggConfig
        if dataclasses.is_dataclass(hint):
            yield from ranged_fields(hint, f"{prefix}{spec.name}.")
        elif "range" in spec.metadata:
            yield f"{prefix}{spec.name}", spec.metadata["range"], hint is int, spec.default


FIELDS = list(ranged_fields())


def outside(allowed: Range, integer: bool) -> list[str]:
    """Values just outside `allowed`, and the non-finite ones for float fields."""
    step = 1 if integer else 1e-3
    bad = []
    if allowed.low is not None:
        bad.append(allowed.low if allowed.low_open else allowed.low - step)
    if allowed.high is not None:
        bad.append(allowed.high if allowed.high_open else allowed.high + step)
    out = [str(int(v)) if integer else repr(float(v)) for v in bad]
    return out if integer else [*out, "inf", "-inf", "nan"]


def test_every_numeric_field_declares_a_range_its_default_lies_in():
    schema_numbers = {key for key, *_ in FIELDS}
    assert len(schema_numbers) >= 29  # every int and float field of every schema
    for key, allowed, _, default in FIELDS:
        assert default is None or allowed.contains(float(default)), key  # None: derived


@pytest.mark.parametrize(
    ("key", "allowed", "integer", "default"), FIELDS, ids=[f[0] for f in FIELDS]
)
def test_every_numeric_field_rejects_a_value_outside_its_range(key, allowed, integer, default):
    base = ["privacy=secagg"] if key.startswith("privacy.") else []
    for value in outside(allowed, integer):
        with pytest.raises(ConfigError, match=rf"^{key}=\S+ is invalid: allowed "):
            compose_config([*base, f"{key}={value}"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+train.epochs=3", "train.epochs is not a parameter .* did you mean 'train.local_epochs'"),
        ("+rounds=3", "rounds is not a parameter .* did you mean 'num_rounds'"),
        ("+federation.cpus=2", "federation.cpus is not a parameter"),
    ],
)
def test_a_key_the_schema_lacks_is_refused_with_the_nearest_one(override, message):
    with pytest.raises(ConfigError, match=message):
        compose_config([override])


def test_free_form_task_arguments_stay_free():
    cfg = compose_config(["+task.model_args.width=3", "+task.source_args.rows=5"])
    assert cfg.task.model_args["width"] == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ("~task", r"task has no value: allowed to set it"),
        ("task='digits", r"'overrides' could not be parsed: No closing quotation"),
    ],
)
def test_removing_a_group_or_an_unclosed_quote_names_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config({"overrides": overrides})


def test_non_finite_checks_are_real():
    assert not Range(low=0, low_open=True).contains(math.inf)
    assert not Range().contains(math.nan)
