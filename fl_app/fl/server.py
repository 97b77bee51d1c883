"""One server run, top to bottom: keys -> run state -> strategy -> rounds -> artifacts.

`fl_app.server_app` calls `run_server` once the run's log level is set (this module
imports TensorFlow).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.common import ndarrays_to_parameters
from flwr.server import Grid

from fl_app.config import to_yaml
from fl_app.config.schema import AppConfig
from fl_app.config.task import data_spec
from fl_app.fl.factory import build_algorithm, build_strategy, check_task, new_model
from fl_app.fl.failures import NoRoundAggregated, client_cause
from fl_app.fl.modes import mode_for
from fl_app.fl.rounds import run_rounds
from fl_app.fl.wire import CountingGrid
from fl_app.ml.data import source_fingerprint
from fl_app.ml.models import weights_of
from fl_app.run.artifacts import write_artifacts
from fl_app.run.progress import RunFacts, RunReport, summary_lines
from fl_app.run.state import RunState, resolve_run_dir, run_identity
from fl_app.run.tracking import TENSORBOARD_DIR, trackers_for

logger = logging.getLogger(__name__)


def run_server(grid: Grid, context: Context, cfg: AppConfig, app_dir: Path | None = None) -> None:
    """Run one federated training job as `cfg` (the run's composed config) asks;
    `app_dir` is a user app's directory (`fl-app new`), named in the decrypt hint.

    Every check comes before the first write: a refused run leaves its directory as it
    was (no config.yaml over another run's, no keys generated into it). A tracker that
    cannot start (MLflow missing, a bad store) is such a check.
    """
    run_dir = resolve_run_dir(cfg, context.run_id)
    RunState.check_start(run_dir, resume=cfg.resume)
    trackers = trackers_for(cfg, run_dir, context.run_id)
    try:
        summary = _train(grid, context, cfg, run_dir, trackers, app_dir)
    except BaseException:
        for tracker in trackers:
            tracker.abort()
        raise
    for tracker in trackers:
        tracker.finish(summary, run_dir)
    if summary["rounds_completed"] == 0:
        cause = client_cause([drop["why"] for drop in summary["dropped"]])
        raise NoRoundAggregated(
            f"no round aggregated in {summary['rounds_run']} round(s): every update was "
            "rejected or too few arrived"
            + (f" (the clients: {cause})" if cause else " (see the warnings above)")
            + "; the model is the untrained initial one"
        )


def _train(
    grid: Grid,
    context: Context,
    cfg: AppConfig,
    run_dir: Path,
    trackers: list[Any],
    app_dir: Path | None,
) -> dict[str, Any]:
    """Keys, run state, strategy, the rounds, then the artifacts and the summary block."""
    mode = mode_for(cfg)
    simulated = cfg.federation.name == "simulation"  # the server can see the source
    rows = (
        source_fingerprint(data_spec(cfg.task, cfg.partition)) if simulated else None
    )  # reads (checks) it
    net = new_model(cfg)  # one model for the layout, central evaluation and the final save
    check_task(cfg, net)
    # the algorithm's arguments, and whether the mode can run it
    mode.check_algorithm(
        build_algorithm(cfg, ndarrays_to_parameters(weights_of(net)), net, run_dir)
    )
    # Keys last among the checks: generating them is the run directory's first write.
    keys = mode.server_keys(cfg, run_dir, generate=not cfg.resume)
    identity = run_identity(cfg, keys.fingerprint if keys else None, rows)
    if cfg.resume:
        state = RunState.resume(run_dir, identity)
    else:
        state = RunState.fresh(run_dir, identity, weights_of(net))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))

    facts = RunFacts(cfg.num_rounds, cfg.task.objective.primary, net.count_params())
    report = RunReport(state.history, facts, sinks=list(trackers))
    grid = CountingGrid(
        grid,
        poll_interval=cfg.federation.poll_interval,
        max_interval=cfg.federation.poll_max_interval,
    )
    strategy = build_strategy(
        cfg, mode, state, net=net, keys=keys, grid=grid, on_round_complete=report.round_complete
    )
    run_rounds(cfg, mode, grid, context, strategy, cfg.num_rounds - state.completed_rounds)

    summary = write_artifacts(cfg, mode.facts, run_dir, state, net=net, run_id=context.run_id)
    report.flush()
    files = ["summary.json", "metrics.csv", "metrics.png"]
    if cfg.tracking.tensorboard:
        files.append(f"{TENSORBOARD_DIR}/")
    for line in summary_lines(summary, files, _secret_path(cfg, run_dir), app_dir):
        logger.info("%s", line)
    return summary


def _secret_path(cfg: AppConfig, run_dir: Path) -> str | None:
    """Where the run's HE secret context is, when this machine knows: the keys a
    simulation generated, or the configured `he.secret_context`."""
    generated = run_dir / "keys" / "secret.ctx"
    if generated.exists():
        return str(generated)
    return cfg.he.secret_context or None  # every config has an `he` group
