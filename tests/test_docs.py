"""The README's commands are the ones CI and the config actually use; the docs' commands,
overrides and generated references match the code, and the docs site builds strictly."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from fl_app.config import compose_config
from fl_app.config.schema import plain

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text, re.DOTALL)


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = readme_commands()[1]
    assert "pytest" in test_command
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_readme_run_command_simulates_the_configured_number_of_supernodes():
    run_command = readme_commands()[0]
    assert "flwr run ." in run_command
    assert "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1" in run_command
    supernodes = int(re.search(r"num-supernodes=(\d+)", run_command).group(1))
    cpus = int(re.search(r"client-resources-num-cpus=(\d+)", run_command).group(1))
    federation = compose_config().federation
    assert supernodes == federation.num_supernodes
    assert cpus == federation.client_num_cpus


# ---------------------------------------------------------------- the docs site
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
COMMANDS = ("fl-app", "fl-experiment")
ENV_PREFIX = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")
OVERRIDE_KEY = re.compile(r"(?<![\w./$-])\+?([a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*)=")
INLINE_OVERRIDES = re.compile(r"overrides='([^']*)'")
HYDRA_FLAGS = {"-m", "--multirun", "--help", "--hydra-help", "--cfg", "job"}
# Keys a docs bash block names on purpose although no config has them.
NOT_KEYS = {"overrides"}  # the run-config key itself (`--run-config "overrides='...'"`)


def bash_blocks(path: Path) -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", path.read_text(), re.DOTALL)


def command_lines(block: str) -> list[list[str]]:
    """Each fl-app / fl-experiment command of a bash block, as its arguments (after any
    `cd X &&`, environment assignments or `.venv/bin/`), comments and `\\` joined away."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        line = re.sub(r"<[^<>]*>", lambda m: m.group(0).replace(" ", "_"), line)  # <run dir>
        for segment in re.split(r"&&|;", re.sub(r"(^|\s)#.*$", "", line)):
            words = shlex.split(segment)
            while words and ENV_PREFIX.match(words[0]):
                words.pop(0)
            if words and words[0].removeprefix(".venv/bin/") in COMMANDS:
                commands.append([words[0].removeprefix(".venv/bin/"), *words[1:]])
    return commands


def test_every_fl_app_command_in_the_docs_parses():
    """Every `fl-app ...` in a bash block names a real command and real options."""
    from fl_app.cli import INTERNAL_COMMANDS, build_parser

    parser, seen, refused = build_parser(), 0, []
    for path in PAGES:
        for block in bash_blocks(path):
            for words in command_lines(block):
                seen += 1
                if words[0] == "fl-experiment":
                    odd = [w for w in words[1:] if "=" not in w and w not in HYDRA_FLAGS]
                    refused += [f"{path.name}: {shlex.join(words)}: {odd}"] if odd else []
                    continue
                errors = io.StringIO()
                try:
                    with contextlib.redirect_stderr(errors):
                        parser.parse_args(words[1:])
                except SystemExit:
                    refused.append(f"{path.name}: {shlex.join(words)}: {errors.getvalue()}")
        for inline in re.findall(r"`fl-app ([a-z][a-z-]*)", path.read_text()):  # in prose
            if inline not in public_commands(parser) | INTERNAL_COMMANDS:
                refused.append(f"{path.name}: `fl-app {inline}`: no such command")
    assert seen >= 15, seen
    assert refused == [], "\n".join(refused)


def public_commands(parser: argparse.ArgumentParser) -> set[str]:
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(commands.choices)


def test_every_public_fl_app_command_has_help():
    """What the CLI reference lists: every command's --help runs (in process)."""
    from fl_app.cli import INTERNAL_COMMANDS, build_parser

    for name in sorted(public_commands(build_parser()) - INTERNAL_COMMANDS):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
            build_parser().parse_args([name, "--help"])
        assert exit_.value.code == 0 and f"fl-app {name}" in out.getvalue()


def test_every_override_in_the_docs_names_a_key_or_group():
    """Hydra overrides in bash blocks (`key.sub=value`, `fl-experiment` arguments) and in
    `overrides='...'` anywhere name keys the composed config has, or config groups."""
    from fl_app.config.compose import group_options
    from fl_app.config.schema import SweepConfig

    known = set(group_options()) | {spec.name for spec in dataclasses.fields(SweepConfig)}
    algorithms = [[f"strategy={name}", "privacy=none"] for name in group_options()["strategy"]]
    for cfg in (compose_config(o) for o in ([], ["privacy=secagg"], *algorithms)):
        known |= set(dotted_keys(plain(cfg)))
    unknown, checked = [], 0
    for path in PAGES:
        text = path.read_text()
        named = [key for block in bash_blocks(path) for key in OVERRIDE_KEY.findall(block)]
        for inline in INLINE_OVERRIDES.findall(text):
            named += [key for word in inline.split() for key in OVERRIDE_KEY.findall(word)]
        checked += len(named)
        unknown += [
            f"{path.name}: {key}"
            for key in named
            if key not in known and key not in NOT_KEYS and not key.startswith("hydra.")
        ]
    assert checked >= 40, checked
    assert unknown == [], f"overrides naming no key of the config: {sorted(set(unknown))}"


def dotted_keys(node: dict, prefix: str = "") -> list[str]:
    """Every key of a nested mapping, leaves and inner nodes, dotted."""
    keys = []
    for key, value in node.items():
        keys.append(f"{prefix}{key}")
        if isinstance(value, dict):
            keys += dotted_keys(value, f"{prefix}{key}.")
    return keys


FREE_FORM = {"strategy.algorithm"}  # a mapping of its own: the algorithm's arguments


def leaf_keys(node: dict, prefix: str = "") -> list[str]:
    """The dotted keys of a nested mapping's leaves (an empty mapping is a leaf, and so is
    a free-form one)."""
    leaves = []
    for key, value in node.items():
        if isinstance(value, dict) and value and f"{prefix}{key}" not in FREE_FORM:
            leaves += leaf_keys(value, f"{prefix}{key}.")
        else:
            leaves.append(f"{prefix}{key}")
    return leaves


def test_configuration_reference_lists_every_key_of_the_composed_config():
    from fl_app.config.reference import keys, reference_markdown

    text = reference_markdown()
    composed = set()
    for overrides in ([], ["privacy=secagg"]):
        composed |= set(leaf_keys(plain(compose_config(overrides))))
    missing = sorted(key for key in composed if f"| `{key}` |" not in text)
    assert missing == [], f"keys missing from the configuration reference: {missing}"
    assert {key.path for key in keys()} == composed | {"quiet"}


def test_configuration_reference_gives_every_key_a_meaning_and_its_range():
    from fl_app.config.reference import keys

    listed = {key.path: key for key in keys()}
    assert [path for path, key in listed.items() if not key.meaning] == []
    assert listed["train.local_epochs"].allowed == "an integer >= 1"
    assert listed["train.local_epochs"].default == "`2`"
    assert listed["task.client_test_fraction"].allowed == "a number in (0, 1)"
    assert "federated evaluation" in listed["task.client_test_fraction"].meaning
    assert "round r+1's fit" in listed["strategy.evaluate_with_fit"].meaning  # continued
    assert listed["strategy.centralized_evaluation"].default == "`null`"
    assert listed["task.name"].default == "`digits` (`task=digits`)"
    assert "`privacy=secagg` only" in listed["privacy.num_shares"].meaning
    assert listed["privacy.name"].allowed == "set by choosing `privacy=...`"
    assert "`num-server-rounds`" in listed["num_rounds"].meaning


@pytest.mark.slow
def test_docs_build_strictly(tmp_path):
    """mkdocs build --strict: every page, link, anchor and generated reference resolves."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "--site-dir",
         str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "configuration" / "index.html").is_file()
