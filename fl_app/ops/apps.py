"""A user's own Flower app (`fl-app new`) as operator commands find and compose it:
`fl-experiment`, `fl-app decrypt` and `fl-app export-partitions` run in its directory
(or are given it) and see its `conf/` and task module as its ServerApp does."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from fl_app.config import compose_config
from fl_app.config.schema import AppConfig
from fl_app.ops.flower import APP_DIR, NO_APP


def app_dir_at(directory: Path) -> Path:
    """The Flower app to run from `directory`: a user's app there (a `pyproject.toml` with
    `[tool.flwr.app]` and a `conf/`, as `fl-app new` writes), else the repository's own
    in a source checkout; refused when there is neither (an installed fl_app has no app
    of its own)."""
    directory = directory.resolve()
    if directory != APP_DIR and _is_user_app(directory):
        return directory
    if APP_DIR is None:
        raise ValueError(NO_APP.format(where=directory))
    return APP_DIR


def _is_user_app(directory: Path) -> bool:
    project = directory / "pyproject.toml"
    if not (project.is_file() and (directory / "conf").is_dir()):
        return False
    try:
        tables = tomllib.loads(project.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False
    return "app" in tables.get("tool", {}).get("flwr", {})


def compose_for_app(overrides: list[str], app_dir: Path | None = None) -> AppConfig:
    """The config as the app in `app_dir` (default: the current directory's, if it is
    one) composes it: its `conf/` searched, its task module importable. Outside any app,
    fl_app's bundled groups alone (enough for a bundled task, also when installed)."""
    if app_dir is not None and not _is_user_app(app_dir.resolve()):
        raise ValueError(f"app={str(app_dir)!r} is invalid: no Flower app with a conf/ there")
    app = (app_dir if app_dir is not None else Path.cwd()).resolve()
    return compose_config(overrides, enter_app(app) if _is_user_app(app) else None)


def enter_app(app: Path) -> Path | None:
    """Make a user app's task module importable, as in its FAB; return its `conf/`
    (None for fl_app's own app)."""
    if app == APP_DIR:
        return None
    if str(app) not in sys.path:
        sys.path.insert(0, str(app))
    return app / "conf"
