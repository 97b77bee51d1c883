"""MkDocs hook: the generated parts of the docs, made from the code at build time.

`<!-- generated: configuration -->` becomes the config groups (every option, what its
file sets) and every key of the schema (fl_app.config.reference); `<!-- generated: cli -->`
becomes `fl-app`'s commands from its argparse parser and `fl-experiment`'s usage.
"""

from __future__ import annotations

import argparse
import ast
import functools
import importlib.util
import textwrap
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from fl_app.cli import INTERNAL_COMMANDS, build_parser
from fl_app.config.compose import CONF_DIR, group_options
from fl_app.config.reference import cell, default_options, reference_markdown, yaml_value

WIDTH = 88  # usage lines wrap here, whatever the terminal of the build


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace each marker with what it names."""
    for marker, make in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown


# ---------------------------------------------------------------- configuration
def configuration_markdown() -> str:
    rows = ["## Config groups", ""]
    rows += ["Choose an option with `group=option` (`task=breast_cancer`); `setup/` and"]
    rows += ["`experiment/` are added with `+` (`+setup=he_dp`, `+experiment=fedsgd`).", ""]
    rows += ["| group | option | what it is | what its file sets |", "|---|---|---|---|"]
    for group, options in group_options().items():
        for option in options:
            path = CONF_DIR / group / f"{option}.yaml"
            default = " (default)" if default_options().get(group) == option else ""
            rows.append(f"| `{group}/` | `{option}`{default} | {cell(_summary(path))} | "
                        f"{_sets(group, path)} |")  # fmt: skip
    return "\n".join([*rows, "", "## Keys", "", reference_markdown()])


def _summary(path: Path) -> str:
    """An option file's first comment paragraph, without its package line or examples."""
    texts: list[str] = []
    for line in path.read_text().splitlines():
        if not line.startswith("#") or not line[1:].strip():
            if texts:
                break
        elif not line.startswith("#   ") and "@package" not in line:
            texts.append(line[1:].strip())
    return " ".join(texts)


def _sets(group: str, path: Path) -> str:
    """What an option file sets: other groups' options, keys, and a sweep's parameters."""
    node = OmegaConf.to_container(OmegaConf.load(path))
    prefix = "" if "@package _global_" in path.read_text() else f"{group}."
    parts = []
    for entry in node.pop("defaults", []):
        if isinstance(entry, dict):
            parts += [f"`{key.split('/')[-1]}={value}`" for key, value in entry.items()]
        elif entry != "_self_":  # a schema of its own, whose keys the reference marks
            parts.append(f"the keys marked `{group}={path.stem}` only")
    for key, values in node.pop("hydra", {}).get("sweeper", {}).get("params", {}).items():
        parts.append(f"sweeps `{key}` over `{values}`")
    pending = [(prefix, node)]
    while pending:  # the remaining keys, as dotted paths
        at, mapping = pending.pop(0)
        for key, value in mapping.items():
            if isinstance(value, dict) and value:
                pending.append((f"{at}{key}.", value))
            elif f"{at}{key}" != f"{group}.name":
                parts.append(f"`{at}{key}={yaml_value(value)}`")
    return ", ".join(parts) or "(its name only)"


# ---------------------------------------------------------------- CLI
def cli_markdown() -> str:
    parser = build_parser()
    rows = ["## `fl-app`", "", cell(parser.description or "").replace("\n", " "), ""]
    rows += _usage(parser) + _arguments(parser)
    for name, sub, summary in public_commands(parser):
        rows += [f"### `fl-app {name}`", "", f"{summary[:1].upper()}{summary[1:]}.", ""]
        rows += _usage(sub) + _arguments(sub)
    return "\n".join(rows + experiment_markdown())


def public_commands(parser: argparse.ArgumentParser) -> list[tuple[str, Any, str]]:
    """(name, parser, one-line help) of each `fl-app` command users run."""
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {action.dest: action.help or "" for action in commands._choices_actions}
    return [
        (name, sub, helps.get(name, sub.description or ""))
        for name, sub in commands.choices.items()
        if name not in INTERNAL_COMMANDS
    ]


def _usage(parser: argparse.ArgumentParser) -> list[str]:
    parser.formatter_class = functools.partial(argparse.HelpFormatter, width=WIDTH)
    return ["```text", parser.format_usage().strip(), "```", ""]


def _arguments(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| argument | takes | default | meaning |", "|---|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        name = ", ".join(action.option_strings) or action.dest
        if action.choices:
            takes = " \\| ".join(f"`{choice}`" for choice in action.choices)
        elif action.nargs == 0:
            takes = "(a flag)"
        else:
            takes = f"`{action.metavar or action.dest.upper()}`" + (
                " ..." if action.nargs in ("*", "+") else ""
            )
        positional_needed = not action.option_strings and action.nargs not in ("?", "*")
        if positional_needed or (action.option_strings and action.required):
            default = "required"
        elif action.nargs == 0 or action.default in (None, []):
            default = ""
        else:
            default = f"`{action.default}`"
        meaning = action.help or ""
        if isinstance(action, argparse._AppendAction) and "repeatable" not in meaning:
            meaning += " (repeatable)"
        rows.append(f"| `{name}` | {takes} | {default} | {cell(meaning)} |")
    return [*rows, ""] if len(rows) > 2 else []


# ---------------------------------------------------------------- fl-experiment
def experiment_markdown() -> list[str]:
    """`fl-experiment`'s usage (a Hydra app: no argparse to read) and its groups."""
    spec = importlib.util.find_spec("fl_app.sweeps.experiment")
    doc = ast.get_docstring(ast.parse(Path(str(spec.origin)).read_text())) or ""
    lead, _, rest = doc.partition("\n\n")
    examples, _, after = rest.partition("\n\n")
    rows = ["## `fl-experiment`", "", lead.replace("\n", " "), "", "```text"]
    rows += [
        "fl-experiment [--help] [--hydra-help] [--cfg job] [-m | --multirun] [override ...]",
        "```",
        "",
        "```text",
        textwrap.dedent(examples).strip(),
        "```",
        "",
        after.replace("\n", " "),
        "",
        "An override is `group=option` (one of the groups below), `key=value` for any key of",
        "the [configuration reference](configuration.md), `+setup=...` or `+experiment=...`;",
        "with `-m`, comma-separated values are swept (`privacy=none,he`). `--help` prints",
        "every group, a user app's included, and the composed config; `--cfg job` prints the",
        "config of one job without running it; Hydra's own options are under `--hydra-help`.",
        "",
        "| group | options |",
        "|---|---|",
    ]
    rows += [
        f"| `{group}` | {', '.join(f'`{option}`' for option in options)} |"
        for group, options in group_options().items()
    ]
    return [*rows, ""]


MARKERS = {
    "<!-- generated: configuration -->": configuration_markdown,
    "<!-- generated: cli -->": cli_markdown,
}
