"""Flower ServerApp of fl_app (named in pyproject.toml)."""

from flwr.app import Context
from flwr.server import Grid, ServerApp

from fl_app.fl.server import run_server

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run one federated training job as the run config asks."""
    run_server(grid, context)
