"""`fl-app new DIR`: a Flower app of the user's own, outside this repository.

The app names fl_app's ServerApp and ClientApp through a small module of its own that
adds its `conf/` to Hydra's search path, so its `task/` YAML and task module (shipped to
every SuperNode in the FAB) are all a user edits; nobody forks fl_app.
"""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

TEMPLATE = "fl_app.templates"  # package data: app/<file>.tmpl
# file in the app -> its template; `{module}` is the task name.
FILES = {
    "pyproject.toml": "pyproject.toml.tmpl",
    "{module}_app.py": "app.py.tmpl",
    "{module}_task.py": "task.py.tmpl",
    "conf/task/{module}.yaml": "task.yaml.tmpl",
    ".gitignore": "gitignore.tmpl",
}


def template(name: str) -> str:
    """One of the scaffold's templates, read from the installed package."""
    return (files(TEMPLATE) / "app" / name).read_text()


def new_app(directory: Path, name: str) -> list[Path]:
    """Write the app's files into `directory` (refusing to overwrite); return them."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"name={name!r} is invalid: allowed a lowercase identifier (a-z, 0-9, _)")
    if name == "fl_app":
        raise ValueError(f"name={name!r} is invalid: the project would depend on itself")
    fields = {"project": name.replace("_", "-"), "module": name, "name": name}
    texts = {
        directory / path.format(module=name): template(tmpl).format(**fields)
        for path, tmpl in FILES.items()
    }
    existing = [str(path) for path in texts if path.exists()]
    if existing:
        raise FileExistsError(f"refusing to overwrite {existing}")
    for path, text in texts.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(texts)
