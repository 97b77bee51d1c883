"""Composition: Flower's run config -> Hydra overrides -> a validated config.

Flower's run config carries five public keys (see pyproject.toml) that are turned into
Hydra overrides here, so the ServerApp, the ClientApp and tests all compose the same way.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fl_app.config.errors import ConfigError
from fl_app.config.modes import evaluates_centrally
from fl_app.config.schema import SERVER_TEST_SHARE, AppConfig  # (registers the schemas)
from fl_app.config.validate import validate

# fl_app's config is package data, found the same way from a source checkout and from an
# installed wheel: the primary configs (fl_app/conf_root: config.yaml, sweep.yaml) and
# the groups they choose from (fl_app/conf). They are apart because Hydra reads a primary
# config from its primary directory only, while groups are looked up along the search
# path, where a user app's conf/ goes in front of fl_app's.
ROOT_MODULE = "fl_app.conf_root"
ROOT_PACKAGE = f"pkg://{ROOT_MODULE}"
GROUPS_PACKAGE = "pkg://fl_app.conf"
CONF_DIR = Path(str(files("fl_app.conf")))

# Run-config key -> the config key (or group) it sets; `overrides` is the free-form rest.
RUN_CONFIG_KEYS = {
    "privacy": "privacy",
    "strategy": "strategy",
    "num-server-rounds": "num_rounds",
    "output-dir": "output_dir",
}
# What `strategy` meant before the privacy/ group: the privacy mode.
_MOVED_TO_PRIVACY = {"he": "he", "secagg": "secagg"}


def _quote(value: str) -> str:
    """Quote a string for Hydra's override grammar."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def _value(value: str) -> str:
    """A run-config value as a Hydra override's value: a path is quoted, a name is not."""
    return value if re.fullmatch(r"[\w.+-]+", value) else _quote(value)


def overrides_from_run_config(run_config: Mapping[str, Any]) -> list[str]:
    """Turn Flower's run config into a list of Hydra overrides."""
    moved = _MOVED_TO_PRIVACY.get(str(run_config.get("strategy", "")))
    if moved is not None:
        raise ConfigError(
            f"run config strategy={run_config['strategy']!r} is invalid: the privacy mode is "
            f"the run-config key 'privacy' now (privacy = \"{moved}\"), and 'strategy' the "
            "aggregation algorithm (fedavg, fedprox, fedavgm, fedadam, fedyogi)"
        )
    overrides = [
        f"{key}={_value(str(run_config[rc_key]))}"
        for rc_key, key in RUN_CONFIG_KEYS.items()
        if run_config.get(rc_key) not in (None, "")
    ]
    try:
        free_form = shlex.split(str(run_config.get("overrides", "")))
    except ValueError as err:  # e.g. "No closing quotation"
        raise ConfigError(
            f"run config 'overrides' could not be parsed: {err} in {run_config['overrides']!r}"
        ) from err
    try:
        parsed = OverridesParser.create().parse_overrides(free_form)
    except HydraException as err:
        raise ConfigError(f"run config 'overrides' could not be parsed: {err}") from err
    dedicated = {key: rc_key for rc_key, key in RUN_CONFIG_KEYS.items()}
    for override in parsed:
        rc_key = dedicated.get(override.key_or_group)
        if rc_key is not None:
            raise ConfigError(
                f"run config 'overrides' sets '{override.key_or_group}'; use the run-config "
                f"key '{rc_key}' instead"
            )
    return overrides + free_form


def compose_config(
    overrides: list[str] | None = None, search_path: Path | None = None
) -> AppConfig:
    """Compose fl_app's config.yaml with Hydra overrides, validate it, and return it
    typed: the schema's dataclasses (fl_app.config.schema), which every component gets
    its slice of.

    `search_path` is a user app's own `conf/` (`fl-app new`), searched *before* fl_app's
    bundled groups: its `task/` options join fl_app's, and a file of its own named like a
    bundled one (`he/seeded.yaml`, `task/digits.yaml`) replaces it.
    """
    overrides = list(overrides or [])
    try:
        cfg = _compose(overrides, search_path)
    except (HydraException, OmegaConfBaseException) as err:
        unknown = UNKNOWN_KEY.search(str(err))
        if unknown is None:
            raise ConfigError(f"invalid configuration: {_without_search_path(err)}") from err
        # A key the config lacks: composed as an addition, so that validation names it
        # and the nearest key there is ("did you mean ...?").
        added = [f"+{o}" if _key_of(o) == unknown.group(1) else o for o in overrides]
        try:
            cfg = _compose(added, search_path)
        except (HydraException, OmegaConfBaseException):
            raise ConfigError(f"invalid configuration: {_without_search_path(err)}") from err
    validate(cfg)
    return typed(cfg)


def typed(cfg: DictConfig) -> AppConfig:
    """A validated composed config as the schema's dataclasses, with the defaults that
    depend on other keys resolved (task.server_test_fraction)."""
    out = OmegaConf.to_object(cfg)
    if isinstance(out, AppConfig) and out.task.server_test_fraction is None:
        out.task.server_test_fraction = SERVER_TEST_SHARE if evaluates_centrally(cfg) else 0.0
    return out


UNKNOWN_KEY = re.compile(r"Could not override '([^']+)'")


def _key_of(override: str) -> str:
    return override.split("=", 1)[0]


def _without_search_path(err: Exception) -> str:
    """Hydra's message without its "Config search path" listing (fl_app's internals)."""
    return " ".join(str(err).split("Config search path:", 1)[0].split())


def _compose(overrides: list[str], search_path: Path | None) -> DictConfig:
    """fl_app's primary config, its groups found along the search path."""
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_module(config_module=ROOT_MODULE, version_base="1.3"):
        return compose(
            config_name="config", overrides=[search_path_override(search_path), *overrides]
        )


def search_path_override(search_path: Path | None) -> str:
    """The Hydra override that searches fl_app's groups, after a user app's `conf/`."""
    paths = (
        [GROUPS_PACKAGE]
        if search_path is None
        else [f"file://{search_path.resolve()}", GROUPS_PACKAGE]
    )
    return f"hydra.searchpath=[{','.join(_quote(path) for path in paths)}]"


def group_options(search_path: Path | None = None) -> dict[str, list[str]]:
    """Every config group Hydra composes from, with its options: fl_app's and a user
    app's `conf/` (whose options join, or replace, the bundled ones). Hydra's own
    `--help` lists only its primary directory's groups, so `fl-experiment` lists these."""
    options: dict[str, set[str]] = {}
    for root in [CONF_DIR] + ([search_path] if search_path is not None else []):
        for path in root.rglob("*.yaml"):
            group = path.parent.relative_to(root).as_posix()
            options.setdefault(group, set()).add(path.stem)
    return {group: sorted(names) for group, names in sorted(options.items()) if group != "."}


def shadowed(search_path: Path) -> list[str]:
    """The files of a user app's `conf/` that replace one of fl_app's (`task/digits.yaml`)."""
    own = (path.relative_to(search_path) for path in search_path.rglob("*.yaml"))
    return sorted(str(path) for path in own if (CONF_DIR / path).is_file())


def load_config(run_config: Mapping[str, Any], search_path: Path | None = None) -> AppConfig:
    """Compose the configuration a Flower run asks for."""
    return compose_config(overrides_from_run_config(run_config), search_path)


RunKey = tuple[tuple[str, Any], ...]


def run_key(run_config: Mapping[str, Any]) -> RunKey:
    """A hashable, order-free key of a run config (Flower's values are scalars)."""
    return tuple(sorted((str(k), v) for k, v in dict(run_config).items()))


@lru_cache(maxsize=8)
def config_for(key: RunKey, search_path: Path | None) -> AppConfig:
    """The composed, validated config of a run, once per process (never modified by
    its users: the ClientApp calls of a worker share it)."""
    return load_config(dict(key), search_path)


def to_yaml(cfg: AppConfig | DictConfig) -> str:
    """Render the resolved configuration."""
    node = cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
    return OmegaConf.to_yaml(node, resolve=True)
