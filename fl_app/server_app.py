"""Flower ServerApp of fl_app (named in pyproject.toml).

The run's config comes first: its `log_level` decides how TensorFlow is imported
(quietly by default, see fl_app.quiet), so the training code is imported after it.
"""

import logging
from pathlib import Path

from flwr.app import Context
from flwr.server import Grid, ServerApp

from fl_app import quiet
from fl_app.config import ConfigError, load_config
from fl_app.config.compose import shadowed
from fl_app.fl.failures import KNOWN, fail, report_failures_in_one_line
from fl_app.threads import one_blas_thread

logger = logging.getLogger(__name__)


def make_server_app(search_path: Path | None = None) -> ServerApp:
    """fl_app's ServerApp; with `search_path`, a user app's `conf/` is composed too."""
    server = ServerApp()

    @server.main()
    def run(grid: Grid, context: Context) -> None:
        main(grid, context, search_path)

    return server


def main(grid: Grid, context: Context, search_path: Path | None = None) -> None:
    """Run one federated training job as the run config asks (fl_app.fl.server).

    A failure fl_app knows (fl_app.fl.failures) ends the run failed with one line naming
    its cause and fix as the log's last line; its traceback goes to
    `<output_root>/failed/run<id>.log`.
    """
    quiet.setup("info")  # before Ray's actors start (simulation); the config may say debug
    one_blas_thread()
    report_failures_in_one_line("info")
    try:
        cfg = load_config(context.run_config, search_path)
    except ConfigError as err:  # no traceback file: the message is the whole story
        raise fail(err, None, context.run_id) from err
    quiet.setup(cfg.log_level, tensorflow=True)
    report_failures_in_one_line(cfg.log_level)
    from fl_app.fl.logs import use_flower_handlers
    from fl_app.fl.server import run_server  # imports TensorFlow: after quiet.setup

    use_flower_handlers(cfg.log_level)
    quiet.filter_output()  # in simulation, Ray prints its workers' output here
    for name in shadowed(search_path) if search_path is not None else ():
        logger.info("this app's conf/%s replaces fl_app's own", name)
    try:
        run_server(grid, context, cfg, search_path.parent if search_path else None)
    except KNOWN as err:
        raise fail(err, Path(cfg.output_root).expanduser() / "failed", context.run_id) from err


app = make_server_app()
