"""The configuration reference, generated from the schemas in fl_app/config/schema.py:
every key as users override it (`train.local_epochs=3`), its type, default, what it allows
(its `ranged` bounds, or the set validate.py checks) and its meaning: the comment the schema
gives the field, read from the source. The docs build (docs/hooks.py) renders
`reference_markdown()`, after the config groups' options (`compose.group_options`).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize
import typing
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from fl_app.config import schema
from fl_app.config.compose import RUN_CONFIG_KEYS, compose_config, group_options
from fl_app.config.modes import MODES
from fl_app.config.validate import (
    DP_LEVELS,
    HOSTILE_CASES,
    LOG_LEVELS,
    MODELS,
    OBJECTIVES,
    OPTIMIZERS,
)  # fmt: skip
from fl_app.crypto.presets import PRESETS
from fl_app.ml.scaling import PREPROCESSING
from fl_app.ml.sources import BUNDLED

# Keys whose value must be one of a fixed set: the sets validate.py checks against.
CHOICES: dict[str, tuple[str, ...]] = {
    "task.model": MODELS,
    "task.source": tuple(BUNDLED),
    "task.preprocess": PREPROCESSING,
    "task.objective.type": OBJECTIVES,
    "train.optimizer": OPTIMIZERS,
    "privacy.name": tuple(MODES),
    "he.preset": tuple(sorted(PRESETS)),
    "dp.level": DP_LEVELS,
    "fault.hostile": HOSTILE_CASES,
    "log_level": LOG_LEVELS,
}
OPEN_ENDED = {  # what a key takes besides its fixed set
    "task.model": "a `.keras` file, or the import path of a callable",
    "task.source": "the import path of a callable",
}
# Schemas that add fields to another: their own fields exist only in some configs.
ONLY_IN = {
    schema.SecAggConfig: "`privacy=secagg` only",
    schema.SweepConfig: "`fl-experiment` only",
}


@dataclass(frozen=True)
class Key:
    """One row of the reference."""

    path: str  # dotted, as users override it
    type: str
    default: str
    allowed: str
    meaning: str


def field_meanings(cls: type) -> dict[str, str]:
    """Each field's meaning, from its comment in the source of the class that declares it."""
    meanings: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            meanings.update(_own_meanings(textwrap.dedent(inspect.getsource(klass))))
    return meanings


def _own_meanings(source: str) -> dict[str, str]:
    """A field's trailing comment (continued on comment-only lines below it), else the
    comment block right above it; a field with neither, declared right below a field of the
    same type that has a block above it, shares that block (one comment for both)."""
    lines = source.splitlines()
    after_code, alone = {}, {}  # line number -> comment text
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            row, col = token.start
            where = after_code if lines[row - 1][:col].strip() else alone
            where[row] = token.string.lstrip("#").strip()

    def block(row: int, step: int) -> list[str]:  # comment-only lines from `row`, up or down
        texts = []
        while row in alone:
            texts.append(alone[row])
            row += step
        return texts if step > 0 else texts[::-1]

    def trailing(node: ast.AST) -> list[str]:
        return [after_code[r] for r in range(node.lineno, node.end_lineno + 1) if r in after_code]

    nodes = [node for node in ast.parse(source).body[0].body if isinstance(node, ast.AnnAssign)]
    meanings, shared = {}, None  # shared: (annotation, text) of a field described from above
    for i, node in enumerate(nodes):
        own, above = trailing(node), block(node.lineno - 1, -1)
        below = block(node.end_lineno + 1, 1)
        nxt = nodes[i + 1] if i + 1 < len(nodes) else None
        adjacent = nxt is not None and nxt.lineno == node.end_lineno + len(below) + 1
        leads_next = adjacent and not trailing(nxt)  # `below` is the next field's comment
        text = " ".join(own + ([] if leads_next else below) if own else above)
        kind = ast.dump(node.annotation)
        if not text and shared and shared[0] == kind and nodes[i - 1].end_lineno == node.lineno - 1:
            text = shared[1]
        shared = (kind, text) if above and not own else None
        meanings[node.target.id] = text
    return meanings


def keys() -> list[Key]:
    """Every key of fl_app's configuration (fl-experiment's included), in schema order."""
    found: list[Key] = []
    _collect(schema.AppConfig, "", OmegaConf.structured(compose_config()), found, note="")
    return found


def _collect(cls: type, prefix: str, default_run: DictConfig, found: list[Key], note: str) -> None:
    pairs = [(cls, spec) for spec in dataclasses.fields(cls)]
    declared = {spec.name for _, spec in pairs}
    for sub in (sub for sub in ONLY_IN if sub is not cls and issubclass(sub, cls)):
        pairs += [(sub, spec) for spec in dataclasses.fields(sub) if spec.name not in declared]
    for owner, spec in pairs:
        path, hint = f"{prefix}{spec.name}", typing.get_type_hints(owner)[spec.name]
        only = ONLY_IN.get(owner, note) if owner is not cls else note
        if dataclasses.is_dataclass(hint):
            _collect(hint, f"{path}.", default_run, found, only)
            continue
        meaning = field_meanings(owner)[spec.name]
        for flower_key in (k for k, v in RUN_CONFIG_KEYS.items() if v == path):
            meaning += f"; set with the run-config key `{flower_key}`, not in `overrides`"
        meaning += f" ({only})" if only else ""
        default, allowed = _default(spec, path, default_run), _allowed(path, spec, hint)
        found.append(Key(path, _type(hint), default, allowed, meaning))


def _type(hint: Any) -> str:
    if hint is Any:
        return "any"
    return str(hint).replace("typing.", "") if typing.get_args(hint) else hint.__name__


def _default(spec: dataclasses.Field, path: str, default_run: DictConfig) -> str:
    """The schema's default, and the default run's value where its option sets another."""
    factory = spec.default_factory
    value = factory() if factory is not dataclasses.MISSING else spec.default
    chosen = OmegaConf.select(default_run, path, default=MISSING)
    if isinstance(chosen, DictConfig | ListConfig):
        chosen = OmegaConf.to_container(chosen)
    group = path.split(".")[0]
    picked = default_options()
    option = f"`{group}={picked[group]}`" if group in picked else "the default run"
    if value == MISSING:
        return "set by the option" if chosen == MISSING else f"`{yaml_value(chosen)}` ({option})"
    if chosen not in (MISSING, value):
        return f"`{yaml_value(value)}`; `{yaml_value(chosen)}` with {option}"
    return f"`{yaml_value(value)}`"


def _allowed(path: str, spec: dataclasses.Field, hint: Any) -> str:
    group, _, name = path.rpartition(".")
    if name == "name" and group in group_options():
        return f"set by choosing `{group}=...`"
    if path in CHOICES:
        listed = ", ".join(f"`{choice}`" for choice in CHOICES[path])
        text = ("each one of " if typing.get_origin(hint) is list else "one of ") + listed
        return text + (f"; or {OPEN_ENDED[path]}" if path in OPEN_ENDED else "")
    if "range" in spec.metadata:
        return spec.metadata["range"].describe(hint is int)
    return "`true`, `false`" if hint is bool else ""


def yaml_value(value: Any) -> str:
    """A value as an override writes it."""
    if value is None or isinstance(value, bool):
        return str(value).lower().replace("none", "null")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in value.items()) + "}"
    return repr(value) if isinstance(value, float) else (str(value) or "''")


@cache
def default_options() -> dict[str, str]:
    """The option that config.yaml's defaults list picks for each group."""
    primary = OmegaConf.load(str(files("fl_app.conf_root") / "config.yaml"))
    picks = [entry for entry in primary.defaults if isinstance(entry, DictConfig)]
    return {str(group): str(option) for entry in picks for group, option in entry.items()}


def reference_markdown() -> str:
    """Every key as Markdown: one table per config section, top-level keys first."""
    sections: dict[str, list[Key]] = {}
    for key in keys():
        sections.setdefault(key.path.split(".")[0] if "." in key.path else "", []).append(key)
    about, rows = field_meanings(schema.AppConfig), []
    for section, members in sorted(sections.items(), key=lambda item: item[0] != ""):
        intro = about.get(section, "")
        rows += [f"### `{section}`" if section else "### Top-level keys", ""]
        rows += [f"{cell(intro[:1].upper() + intro[1:])}.", ""] if intro else []
        rows += ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        rows += [
            f"| `{k.path}` | `{k.type}` | {k.default} | {cell(k.allowed)} | {cell(k.meaning)} |"
            for k in members
        ]
        rows.append("")
    return "\n".join(rows)


def cell(text: str) -> str:
    """Text that stays inside one Markdown table cell, `<...>` shown outside code spans."""
    parts = text.replace("|", "\\|").replace("\n", " ").split("`")
    return "`".join(p if i % 2 else p.replace("<", "&lt;") for i, p in enumerate(parts))
