"""Composition: Flower's run config -> Hydra overrides -> a validated config.

Flower's run config carries four public keys (see pyproject.toml) that are turned into
Hydra overrides here, so the ServerApp, the ClientApp and tests all compose the same way.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fl_app.config import schema  # noqa: F401  (registers the schemas Hydra composes)
from fl_app.config.errors import ConfigError
from fl_app.config.validate import validate

CONF_DIR = Path(__file__).resolve().parent.parent.parent / "conf"

# Run-config key -> the config key it sets. `overrides` is the free-form rest.
RUN_CONFIG_KEYS = {
    "strategy": "strategy",
    "num-server-rounds": "num_rounds",
    "output-dir": "output_dir",
}


def _quote(value: str) -> str:
    """Quote a string for Hydra's override grammar."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def overrides_from_run_config(run_config: Mapping[str, Any]) -> list[str]:
    """Turn Flower's run config into a list of Hydra overrides."""
    overrides = []
    if "strategy" in run_config:
        overrides.append(f"strategy={run_config['strategy']}")
    if "num-server-rounds" in run_config:
        overrides.append(f"num_rounds={run_config['num-server-rounds']}")
    if run_config.get("output-dir"):
        overrides.append(f"output_dir={_quote(str(run_config['output-dir']))}")
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
    for override in parsed:
        key = override.key_or_group
        for rc_key, cfg_key in RUN_CONFIG_KEYS.items():
            if key == cfg_key:
                raise ConfigError(
                    f"run config 'overrides' sets '{key}'; use the run-config key "
                    f"'{rc_key}' instead"
                )
    return overrides + free_form


def compose_config(
    overrides: list[str] | None = None, search_path: Path | None = None
) -> DictConfig:
    """Compose conf/config.yaml with Hydra overrides, then validate it.

    `search_path` is a user app's own `conf/` (`fl-app new`), searched as well: its
    `task/` options join fl_app's.
    """
    overrides = list(overrides or [])
    if search_path is not None:
        _refuse_shadowed_tasks(search_path)
        overrides.insert(0, f"hydra.searchpath=[{_quote('file://' + str(search_path))}]")
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"invalid configuration {overrides}: {err}") from err
    validate(cfg)
    return cfg


def bundled_tasks() -> list[str]:
    """The names of fl_app's own `task/` options."""
    return sorted(path.stem for path in (CONF_DIR / "task").glob("*.yaml"))


def _refuse_shadowed_tasks(search_path: Path) -> None:
    """A user app's task named like a bundled one would silently lose to it (Hydra finds
    fl_app's first): refuse it, naming the file."""
    for path in sorted((search_path / "task").glob("*.yaml")):
        if path.stem in bundled_tasks():
            raise ConfigError(
                f"{path} has the name of fl_app's bundled task {path.stem!r}, which would be "
                "trained instead of it; rename the file (and its `name:`)"
            )


def load_config(run_config: Mapping[str, Any], search_path: Path | None = None) -> DictConfig:
    """Compose the configuration a Flower run asks for."""
    return compose_config(overrides_from_run_config(run_config), search_path)


RunKey = tuple[tuple[str, Any], ...]


def run_key(run_config: Mapping[str, Any]) -> RunKey:
    """A hashable, order-free key of a run config (Flower's values are scalars)."""
    return tuple(sorted((str(k), v) for k, v in dict(run_config).items()))


@lru_cache(maxsize=8)
def config_for(key: RunKey, search_path: Path | None) -> DictConfig:
    """The composed, validated config of a run, once per process (never modified by
    its users: the ClientApp calls of a worker share it)."""
    return load_config(dict(key), search_path)


def to_yaml(cfg: DictConfig) -> str:
    """Render the resolved configuration."""
    return OmegaConf.to_yaml(cfg, resolve=True)
