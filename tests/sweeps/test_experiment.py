"""fl-experiment: experiment configs compose, and a real multirun ends in a summary."""

from __future__ import annotations

import csv
import itertools
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from fl_app.config import CONF_DIR, compose_config
from fl_app.config.compose import ROOT_MODULE
from fl_app.config.schema import plain
from fl_app.sweeps.experiment import run_config_for

FL_EXPERIMENT = str(Path(sys.executable).parent / "fl-experiment")
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def sweep_jobs(name: str) -> list[list[str]]:
    """The override lists the experiment's sweeper would launch."""
    loaded = OmegaConf.load(CONF_DIR / "experiment" / f"{name}.yaml")
    params = OmegaConf.select(loaded, "hydra.sweeper.params", default={})  # none: one job
    keys = list(params)
    values = [str(params[k]).split(",") for k in keys]
    return [
        [f"{k}={v}" for k, v in zip(keys, combo, strict=True)]
        for combo in itertools.product(*values)
    ]


def test_the_sweep_config_is_the_apps_config_plus_what_only_sweeps_use():
    overrides = ["+setup=he_dp", "task=breast_cancer", "seed=3"]
    with initialize_config_module(config_module=ROOT_MODULE, version_base="1.3"):
        sweep = compose(config_name="sweep", overrides=[*overrides, "quiet=true"])
    app = plain(compose_config(overrides))
    swept = OmegaConf.to_container(sweep)
    # a default that depends on other keys is derived when each job composes its config
    assert swept["task"].pop("server_test_fraction") is None
    assert app["task"].pop("server_test_fraction") == 0.0  # HE: nothing held out
    assert {**app, "quiet": True} == swept
    assert "callbacks" not in (files(ROOT_MODULE) / "config.yaml").read_text()


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_job_of_every_experiment_composes_and_validates(name):
    jobs = sweep_jobs(name)
    assert jobs
    for overrides in jobs:
        cfg = compose_config([f"+experiment={name}", *overrides])  # validates too
        assert cfg.privacy.name in ("none", "secagg", "he")


def test_privacy_modes_compares_plaintext_secagg_every_he_preset_and_he_with_dp():
    modes = {tuple(job) for job in sweep_jobs("privacy_modes")}
    chosen = {
        (c.privacy.name, c.he.preset if c.privacy.name == "he" else None, c.dp.enabled)
        for c in (compose_config(["+experiment=privacy_modes", *m]) for m in modes)
    }
    assert chosen == {
        ("none", None, False),
        ("secagg", None, False),
        ("he", "seeded", False),
        ("he", "compact", False),
        ("he", "nvflare", False),
        ("he", "seeded", True),
    }


def test_heterogeneity_sweeps_alpha_under_dirichlet():
    jobs = sweep_jobs("heterogeneity")
    alphas = set()
    for overrides in jobs:
        cfg = compose_config(["+experiment=heterogeneity", *overrides])
        assert cfg.partition.name == "dirichlet"
        alphas.add(cfg.partition.alpha)
    assert alphas == {0.1, 0.5, 1.0, 10.0}


def test_run_config_carries_everything_but_the_dedicated_keys(tmp_path):
    cfg = OmegaConf.structured(
        compose_config(["privacy=none", "strategy=fedprox", "num_rounds=4"])
    )  # as Hydra gives it
    text = run_config_for(
        cfg, ["privacy=none", "strategy=fedprox", "num_rounds=4", "+setup=none",
              "task=breast_cancer", "quiet=true", "hydra.verbose=true"], tmp_path,
    )  # fmt: skip
    assert text == (
        f"privacy='none' strategy='fedprox' num-server-rounds=4 output-dir='{tmp_path}' "
        "overrides='+setup=none task=breast_cancer'"
    )


@pytest.mark.slow
def test_a_real_multirun_records_each_job_and_summarizes(tmp_path):
    sweep, uri = tmp_path / "sweep", f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking = f"tracking=mlflow tracking.uri={uri}"
    result = subprocess.run(
        [FL_EXPERIMENT, "-m", "privacy=he", "num_rounds=1,-1", "task=breast_cancer",
         "federation.num_supernodes=2", "quiet=true", *tracking.split(),
         f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    with (sweep / "summary.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2  # one real run, one refused before it starts
    # Hydra writes the URI's ':' escaped; the rest of each job's overrides is as given
    by_overrides = {row["overrides"].split(" tracking=")[0]: row for row in rows}
    for privacy in ("he",):
        good = by_overrides[f"privacy={privacy} num_rounds=1 task=breast_cancer "
                            "federation.num_supernodes=2 quiet=True"]  # fmt: skip
        assert good["status"] == "completed"
        assert float(good["final_accuracy"]) > 0.8
        bad = by_overrides[f"privacy={privacy} num_rounds=-1 task=breast_cancer "
                           "federation.num_supernodes=2 quiet=True"]  # fmt: skip
        assert bad["status"] == "failed"
        assert "num_rounds=-1 is invalid" in bad["error"]
    assert (sweep / "summary.md").read_text().count("| completed |") == 1
    assert (sweep / "accuracy_per_round.png").stat().st_size > 0
    # `tensorboard --logdir <sweep>` finds each completed job under the sweep
    assert len(list(sweep.glob("*/run/tensorboard/events.out.tfevents.*"))) == 1
    # and MLflow has it as a run of one experiment named after the sweep
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(str(sweep))
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_name for r in runs] == ["job0"]
    assert {r.data.params["privacy.name"] for r in runs} == {"he"}


def test_jobs_run_the_user_app_they_are_started_in(tmp_path):
    from fl_app.ops.apps import app_dir_at
    from fl_app.ops.flower import APP_DIR
    from fl_app.ops.scaffold import new_app

    new_app(tmp_path / "app", "mine")
    assert app_dir_at(tmp_path / "app") == (tmp_path / "app").resolve()
    assert app_dir_at(tmp_path) == APP_DIR  # not an app: the repository's own
    assert app_dir_at(APP_DIR) == APP_DIR
    (tmp_path / "app" / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert app_dir_at(tmp_path / "app") == APP_DIR  # no [tool.flwr.app]


def test_a_failed_jobs_error_is_the_runs_one_line_cause():
    from fl_app.sweeps.experiment import failure_line

    output = (
        "\x1b[92mINFO \x1b[0m:      Starting Flower Simulation\n"
        "\x1b[91mERROR \x1b[0m:     run failed: DataError: /d/x.csv: column 'site' holds "
        "object values; allowed numbers — fix the data the task reads\n"
    )
    assert failure_line(output) == (
        "run failed: DataError: /d/x.csv: column 'site' holds object values; allowed numbers"
        " — fix the data the task reads"
    )
    assert failure_line("INFO: round 1/1 · ...\n") is None
