"""`fl-experiment`: Hydra (multi)run entry point; each job is one real `flwr run`.

    fl-experiment privacy=none                            one run
    fl-experiment -m privacy=none,he partition=iid,dirichlet
    fl-experiment -m strategy=fedavg,fedprox privacy=he
    fl-experiment -m +experiment=privacy_modes
    cd my_app && fl-experiment -m task=mine privacy=none,he    (an app of `fl-app new`)

A job turns its composed config into Flower's run config, launches `flwr run` (its own
simulation SuperLink, or the deployment connection of `federation=deployment`), waits,
confirms the run's final status and keeps the run's artifacts in the Hydra job
directory (`<job dir>/run`). A failed job is recorded as failed (`job.json`) and the
sweep goes on; at the end of a multirun `fl-app summarize` runs on the sweep directory.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from fl_app import quiet
from fl_app.config import ConfigError, validate
from fl_app.config.compose import (
    ROOT_PACKAGE,
    RUN_CONFIG_KEYS,
    group_options,
    search_path_override,
)
from fl_app.ops.apps import app_dir_at, enter_app
from fl_app.ops.flower import FlowerCLI
from fl_app.ops.local_superlink import LocalSuperLink
from fl_app.sweeps.summary import read_json, summarize_sweep

JOB_FILE = "job.json"
RUN_DIR = "run"
# Config keys that travel as their own run-config keys (or only sweeps read), not inside
# `overrides`.
DEDICATED = {*RUN_CONFIG_KEYS.values(), "quiet"}
ROUND_LINE = re.compile(r"round (\d+)/\d+ · ")  # fl_app's line at the end of each round
FAILURE_LINE = re.compile(r"run failed: (.+)")  # fl_app.fl.failures.PREFIX
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Flower colours its log levels


def failure_line(output: str) -> str | None:
    """The ServerApp's one-line cause of a failed run ("run failed: ..."), if it gave one."""
    found = FAILURE_LINE.findall(ANSI.sub("", output))
    return f"run failed: {found[-1].strip()}" if found else None


def app_overrides(app: Path) -> list[str]:
    """The Hydra overrides in the app's pyproject.toml run config (`overrides`)."""
    try:
        tables = tomllib.loads((app / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return []
    text = tables.get("tool", {}).get("flwr", {}).get("app", {}).get("config", {})
    return shlex.split(str(text.get("overrides", "")))


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def run_config_for(cfg: DictConfig, task_overrides: list[str], run_dir: Path) -> str:
    """Flower's run config for one job: its dedicated keys (privacy, strategy, rounds,
    output dir; fl_app.config.compose.RUN_CONFIG_KEYS) and the rest as `overrides`."""
    rest = [
        o for o in task_overrides if _key(o) not in DEDICATED and not _key(o).startswith("hydra")
    ]
    for override in rest:
        if "'" in override:
            raise ConfigError(f"override {override!r} is invalid: single quotes cannot be passed")
    values = {}
    for rc_key, key in RUN_CONFIG_KEYS.items():  # a group's value is its option's name
        value = run_dir if key == "output_dir" else OmegaConf.select(cfg, key)
        values[rc_key] = value.name if isinstance(value, DictConfig) else value
    dedicated = " ".join(
        f"{key}={value}" if isinstance(value, int) else f"{key}='{value}'"
        for key, value in values.items()
    )
    return f"{dedicated} overrides='{' '.join(rest)}'"


def launch(cfg: DictConfig, run_config: str, on_line, app_dir: Path | None = None) -> Any:
    """Run the app in `app_dir` on a private simulation SuperLink, or on the configured
    deployment."""
    fed = cfg.federation
    if fed.name == "simulation":
        federation = (
            f"num-supernodes={fed.num_supernodes} client-resources-num-cpus={fed.client_num_cpus}"
        )
        with tempfile.TemporaryDirectory() as home, LocalSuperLink(Path(home)) as link:
            cli = FlowerCLI(link.env, app_dir=app_dir)
            return cli.submit(run_config, federation_config=federation, on_line=on_line)
    return FlowerCLI(dict(os.environ), fed.connection, app_dir).submit(run_config, on_line=on_line)


class RoundProgress:
    """A progress bar over the rounds of one job, or nothing in quiet mode."""

    def __init__(self, label: str, rounds: int, quiet: bool) -> None:
        self.progress = None
        if not quiet:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("round {task.completed}/{task.total}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
        if self.progress is not None:
            self.task = self.progress.add_task(label, total=rounds)
            self.progress.start()

    def line(self, text: str) -> None:
        if self.progress is not None and (match := ROUND_LINE.search(text)):
            self.progress.update(self.task, completed=int(match.group(1)))

    def finish(self) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=self.progress.tasks[0].total)
            self.progress.stop()


def tracking_overrides(cfg: DictConfig, hydra_cfg: DictConfig) -> list[str]:
    """A multirun's jobs as MLflow runs job<N> of one experiment named after the sweep
    directory, unless tracking.experiment is set."""
    if hydra_cfg.mode.name != "MULTIRUN" or cfg.tracking.experiment:
        return []
    name = re.sub(r"[^\w./-]", "_", str(hydra_cfg.sweep.dir))
    return [f"tracking.experiment={name}", f"tracking.run_name=job{hydra_cfg.job.num}"]


def run_job(cfg: DictConfig) -> dict[str, Any]:
    """One Hydra job: launch, confirm, record. Never raises for a failed run."""
    hydra_cfg = HydraConfig.get()
    job_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    record: dict[str, Any] = {
        "job": hydra_cfg.job.num if hydra_cfg.mode.name == "MULTIRUN" else 0,
        "overrides": " ".join(overrides),
        "choices": {k: v for k, v in hydra_cfg.runtime.choices.items() if "hydra" not in k},
        "status": "failed",
        "run_dir": str(job_dir / RUN_DIR),
        "app_dir": str(app_dir_at(Path.cwd())),
    }
    started = time.monotonic()
    progress = None
    try:
        validate(cfg)
        job_overrides = [*overrides, *tracking_overrides(cfg, hydra_cfg)]
        run_config = run_config_for(cfg, job_overrides, job_dir / RUN_DIR)
        progress = RoundProgress(
            f"job {record['job']}: {record['overrides']}", cfg.num_rounds, cfg.quiet
        )
        result = launch(cfg, run_config, progress.line, Path(record["app_dir"]))
        record.update(run_id=result.run_id, flower_status=result.status)
        summary_path = job_dir / RUN_DIR / "summary.json"
        if result.status == "finished:completed" and summary_path.exists():
            record["status"] = "completed"
        else:
            record["error"] = failure_line(result.output) or (
                f"run ended {result.status}; see {job_dir / 'flwr_run.log'}"
            )
        (job_dir / "flwr_run.log").write_text(result.output)
    except (ConfigError, RuntimeError, TimeoutError, OSError, KeyError) as err:
        record["error"] = f"{type(err).__name__}: {err}"
    finally:
        if progress is not None:
            progress.finish()
    record["seconds"] = round(time.monotonic() - started, 1)
    (job_dir / JOB_FILE).write_text(json.dumps(record, indent=2) + "\n")
    summary = read_json(job_dir / RUN_DIR / "summary.json")
    metric = summary.get("primary_metric", cfg.task.objective.primary)
    value = summary.get("final_metric")
    Console(stderr=True).print(
        f"[bold]job {record['job']}[/bold] {record['overrides'] or '(defaults)'}: "
        f"{record['status']}, {metric} {value if value is None else f'{value:.4f}'}, "
        f"{record['seconds']} s" + (f" — {record['error']}" if "error" in record else "")
    )
    return record


class SweepSummary(Callback):
    """Hydra callback: summarise a multirun when it ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        paths = summarize_sweep(sweep_dir)
        Console(stderr=True).print(f"Sweep summary: {', '.join(str(p) for p in paths)}")


def _job(cfg: DictConfig) -> None:
    quiet.setup(cfg.log_level)  # this process imports no TensorFlow; its runs set their own
    run_job(cfg)


def main() -> None:
    """`fl-experiment`. In a user's app directory (`fl-app new`), each job runs that app,
    and its `conf/` is searched before fl_app's groups (so `--help` lists its tasks and
    its files replace bundled ones), as for the app's own ServerApp."""
    try:
        app = app_dir_at(Path.cwd())
    except ValueError as err:
        sys.exit(f"fl-experiment: {err}")
    conf = enter_app(app)
    given = {_key(arg) for arg in sys.argv[1:] if not arg.startswith("-")}
    # The app's own run-config `overrides` (an app of `fl-app new` names its task there)
    # are the sweep's defaults too, unless the command line sets the same key.
    sys.argv += [o for o in app_overrides(app) if _key(o) not in given]
    groups = "\n".join(
        f"{group}: {', '.join(names)}" for group, names in group_options(conf).items()
    )
    OmegaConf.register_new_resolver("fl_app_groups", lambda: groups, replace=True)
    if conf is not None and not any(arg.startswith("hydra.searchpath") for arg in sys.argv[1:]):
        sys.argv.append(search_path_override(conf))
    hydra.main(config_path=ROOT_PACKAGE, config_name="sweep", version_base="1.3")(_job)()
