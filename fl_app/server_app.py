"""Flower ServerApp of fl_app (named in pyproject.toml).

One run, top to bottom: config -> keys -> run state -> strategy -> rounds -> artifacts.
"""

from pathlib import Path

from flwr.app import Context
from flwr.server import Grid, ServerApp

from fl_app.config import load_config, mode_of, to_yaml
from fl_app.fl.factory import build_strategy, check_task, new_model
from fl_app.fl.logs import use_flower_handlers
from fl_app.fl.rounds import run_rounds
from fl_app.fl.server_keys import ServerKeys
from fl_app.fl.wire import CountingGrid
from fl_app.ml.models import weights_of
from fl_app.run.artifacts import write_artifacts
from fl_app.run.state import RunState, resolve_run_dir, run_identity


def make_server_app(search_path: Path | None = None) -> ServerApp:
    """fl_app's ServerApp; with `search_path`, a user app's `conf/` is composed too."""
    server = ServerApp()

    @server.main()
    def run(grid: Grid, context: Context) -> None:
        main(grid, context, search_path)

    return server


def main(grid: Grid, context: Context, search_path: Path | None = None) -> None:
    """Run one federated training job as the run config asks.

    Every check comes before the first write: a refused run leaves its directory as it
    was (no config.yaml over another run's, no keys generated into it).
    """
    use_flower_handlers()
    cfg = load_config(context.run_config, search_path)
    mode = mode_of(cfg)
    run_dir = resolve_run_dir(cfg, context.run_id)
    RunState.check_start(run_dir, resume=cfg.resume)
    keys = ServerKeys.load(cfg, run_dir, generate=not cfg.resume) if mode.encrypted else None
    identity = run_identity(cfg, keys.fingerprint if keys else None)
    net = new_model(cfg)  # one model for the layout, central evaluation and the final save
    check_task(cfg, net)
    if cfg.resume:
        state = RunState.resume(run_dir, identity)
    else:
        state = RunState.fresh(run_dir, identity, weights_of(net))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))

    grid = CountingGrid(
        grid,
        poll_interval=float(cfg.federation.poll_interval),
        max_interval=float(cfg.federation.poll_max_interval),
    )
    strategy = build_strategy(cfg, mode, state, net=net, keys=keys, grid=grid)
    run_rounds(cfg, mode, grid, context, strategy, cfg.num_rounds - state.completed_rounds)

    summary = write_artifacts(cfg, mode, run_dir, state, net=net, run_id=context.run_id)
    if summary["rounds_completed"] == 0:
        raise RuntimeError(
            f"no round aggregated in {summary['rounds_run']} round(s): every update was "
            "rejected or too few arrived (see the warnings above); the run failed and its "
            "model is the untrained initial one"
        )


app = make_server_app()
