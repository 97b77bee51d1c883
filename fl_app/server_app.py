"""Flower ServerApp of fl_app (named in pyproject.toml).

The run's config comes first: its `log_level` decides how TensorFlow is imported
(quietly by default, see fl_app.quiet), so the training code is imported after it.
"""

from pathlib import Path

from flwr.app import Context
from flwr.server import Grid, ServerApp

from fl_app import quiet
from fl_app.config import load_config


def make_server_app(search_path: Path | None = None) -> ServerApp:
    """fl_app's ServerApp; with `search_path`, a user app's `conf/` is composed too."""
    server = ServerApp()

    @server.main()
    def run(grid: Grid, context: Context) -> None:
        main(grid, context, search_path)

    return server


def main(grid: Grid, context: Context, search_path: Path | None = None) -> None:
    """Run one federated training job as the run config asks (fl_app.fl.server)."""
    quiet.setup("info")  # before Ray's actors start (simulation); the config may say debug
    cfg = load_config(context.run_config, search_path)
    quiet.setup(cfg.log_level, tensorflow=True)
    from fl_app.fl.logs import use_flower_handlers
    from fl_app.fl.server import run_server  # imports TensorFlow: after quiet.setup

    use_flower_handlers(cfg.log_level)
    quiet.filter_output()  # in simulation, Ray prints its workers' output here
    run_server(grid, context, cfg)


app = make_server_app()
