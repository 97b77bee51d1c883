"""`fl-app new DIR`: a Flower app of the user's own, outside this repository.

The app names fl_app's ServerApp and ClientApp through a small module of its own that
adds its `conf/` to Hydra's search path, so its `task/` YAML and task module (shipped to
every SuperNode in the FAB) are all a user edits; nobody forks fl_app.
"""

from __future__ import annotations

import re
from pathlib import Path

from fl_app.config.compose import bundled_tasks

PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{project}"
version = "0.1.0"
description = "A federated Keras task on fl_app"
dependencies = ["fl-app"]

[tool.flwr.app]
publisher = "{project}"

[tool.flwr.app.components]
serverapp = "{module}_app:server"
clientapp = "{module}_app:client"

# fl_app's public run config (its README): the task is chosen in `overrides`.
[tool.flwr.app.config]
strategy = "he"
num-server-rounds = 3
output-dir = ""
overrides = "task={name}"
"""

APP_MODULE = '''\
"""This app's ServerApp and ClientApp: fl_app's, composed with this directory's conf/."""

from pathlib import Path

from fl_app.client_app import make_client_app
from fl_app.server_app import make_server_app

CONF = Path(__file__).resolve().parent / "conf"

server = make_server_app(search_path=CONF)
client = make_client_app(search_path=CONF)
'''

TASK_MODULE = '''\
"""The task's model (and, if no file source fits, its data): edit freely."""

import keras
import numpy as np


def build(width: int = 16) -> keras.Model:
    """A Keras model; left uncompiled, fl_app compiles it from the task's objective."""
    inputs = keras.Input((4,))
    x = keras.layers.Dense(width, activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))


def load(rows: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Example data: replace with your own, or use a file source (see conf/task)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 4)).astype("float32")
    return x, (x[:, 0] - x[:, 1] > 0).astype("int64")
'''

TASK_YAML = """\
# The task: model + data + objective (fl_app README, "Your own task").
name: {name}
model: {module}_task.build
model_args: {{width: 16}}
# A CSV or Parquet file instead:
#   source: fl_app.ml.sources.table
#   source_args: {{path: /data/mine.parquet, target: outcome}}
source: {module}_task.load
preprocess: standardize
objective:
  type: classification
  loss: binary_crossentropy
  metrics: [accuracy, auc]
  primary: auc
"""

GITIGNORE = ".venv/\noutputs/\nmultirun/\n__pycache__/\n*.npz\n*.ctx\n"


def new_app(directory: Path, name: str) -> list[Path]:
    """Write the app's files into `directory` (refusing to overwrite); return them."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"name={name!r} is invalid: allowed a lowercase identifier (a-z, 0-9, _)")
    taken = {"fl_app": "fl_app itself (the project would depend on itself)"}
    taken.update({task: f"fl_app's bundled task {task!r}" for task in bundled_tasks()})
    if name in taken:
        raise ValueError(f"name={name!r} is invalid: it is {taken[name]}; choose another name")
    module = name
    files = {
        directory / "pyproject.toml": PYPROJECT.format(
            project=name.replace("_", "-"), module=module, name=name
        ),
        directory / f"{module}_app.py": APP_MODULE,
        directory / f"{module}_task.py": TASK_MODULE,
        directory / "conf" / "task" / f"{name}.yaml": TASK_YAML.format(name=name, module=module),
        directory / ".gitignore": GITIGNORE,
    }
    existing = [str(path) for path in files if path.exists()]
    if existing:
        raise FileExistsError(f"refusing to overwrite {existing}")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(files)
