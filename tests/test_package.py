"""fl_app as an installed package (issue 23): its config groups and templates are package
data, composed through Hydra's package search path, with a user app's `conf/` in front.
The real install (a wheel in a fresh environment, used from outside the repository) is
CI's `.ci/wheel`."""

from __future__ import annotations

import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest

from fl_app.config import CONF_DIR, compose_config
from fl_app.config.compose import group_options, shadowed

FL_EXPERIMENT = str(Path(sys.executable).parent / "fl-experiment")


def user_conf(tmp_path: Path, **yaml_files: str) -> Path:
    """A user app's conf/ holding `yaml_files` ({"task/mine": text, ...})."""
    conf = tmp_path / "conf"
    for name, text in yaml_files.items():
        (conf / name).with_suffix(".yaml").parent.mkdir(parents=True, exist_ok=True)
        (conf / f"{name}.yaml").write_text(text)
    return conf


def test_the_bundled_groups_are_package_data_not_a_repository_folder():
    assert Path(str(files("fl_app") / "conf")) == CONF_DIR
    assert (files("fl_app.conf_root") / "config.yaml").is_file()
    cfg = compose_config(["task=diabetes"])
    assert (cfg.task.name, cfg.privacy.name, cfg.he.preset) == ("diabetes", "he", "seeded")


def test_a_user_task_joins_the_bundled_ones(tmp_path):
    conf = user_conf(tmp_path, **{"task/wards": "name: wards\nmodel: mlp\nsource: breast_cancer\n"})
    assert compose_config(["task=wards"], conf).task.name == "wards"
    assert compose_config(["task=digits"], conf).task.model == "cnn"  # bundled, untouched
    assert group_options(conf)["task"] == ["breast_cancer", "diabetes", "digits", "synthetic",
                                           "wards"]  # fmt: skip


def test_a_user_file_named_like_a_bundled_one_replaces_it(tmp_path):
    """The app's conf/ is searched first: its `task/digits.yaml` and `he/seeded.yaml` win
    (issue 22 refused such a task because the bundled one won silently)."""
    conf = user_conf(
        tmp_path,
        **{"task/digits": "name: digits\nmodel: mlp\nsource: digits\nmodel_args: {hidden: [8]}\n",
           "he/seeded": "preset: seeded\nmax_examples: 123\n"},
    )  # fmt: skip
    cfg = compose_config(["task=digits"], conf)
    assert (cfg.task.model, list(cfg.task.model_args["hidden"])) == ("mlp", [8])
    assert cfg.he.max_examples == 123
    assert compose_config(["task=digits"]).task.model == "cnn"  # without the app: bundled
    assert shadowed(conf) == ["he/seeded.yaml", "task/digits.yaml"]


def test_the_scaffold_is_written_from_the_packages_templates(tmp_path):
    from fl_app.ops.scaffold import FILES, new_app, template

    written = new_app(tmp_path / "app", "clinic")
    assert [p.relative_to(tmp_path / "app").as_posix() for p in written] == [
        path.format(module="clinic") for path in FILES
    ]
    shipped = (files("fl_app.templates") / "app" / "pyproject.toml.tmpl").read_text()
    assert template("pyproject.toml.tmpl") == shipped
    pyproject = (tmp_path / "app" / "pyproject.toml").read_text()
    assert 'license = "LicenseRef-Proprietary"' in pyproject  # no warning on every run
    assert 'overrides = "task=clinic federation.num_supernodes=2"' in pyproject


def test_an_installed_fl_app_outside_any_app_says_where_to_run(tmp_path, monkeypatch):
    from fl_app.ops import apps

    monkeypatch.setattr(apps, "APP_DIR", None)  # an installed package: no repository app
    with pytest.raises(ValueError, match=r"no Flower app in .*: run this in an app's directory"):
        apps.app_dir_at(tmp_path)
    # a bundled task still composes outside any app (export-partitions, decrypt)
    monkeypatch.chdir(tmp_path)
    assert apps.compose_for_app(["task=breast_cancer"]).task.name == "breast_cancer"


def test_fl_experiment_help_in_an_app_lists_that_apps_tasks(tmp_path):
    from fl_app.ops.scaffold import new_app

    new_app(tmp_path / "app", "clinic")
    result = subprocess.run([FL_EXPERIMENT, "--help"], cwd=tmp_path / "app", capture_output=True,
                            text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "task: breast_cancer, clinic, diabetes, digits, synthetic" in result.stdout
    assert "name: clinic" in result.stdout  # the app's task is the sweep's default
