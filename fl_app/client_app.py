"""Flower ClientApp of fl_app (named in pyproject.toml): one app for every mode.

The run's config comes first: its `log_level` decides how TensorFlow is imported
(quietly by default, see fl_app.quiet), so the training code is imported after it.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.client import Client, ClientApp

from fl_app import quiet
from fl_app.config.compose import config_for, run_key
from fl_app.fl.mods import secaggplus_when_asked
from fl_app.threads import one_blas_thread


def make_client_app(search_path: Path | None = None) -> ClientApp:
    """fl_app's ClientApp; with `search_path`, a user app's `conf/` is composed too."""

    def node_client(context: Context) -> Client:  # Flower wants exactly (context)
        quiet.setup(config_for(run_key(context.run_config), search_path).log_level,
                    tensorflow=True)  # fmt: skip
        one_blas_thread()
        from fl_app.fl.client_fn import client_fn  # imports TensorFlow: after quiet.setup

        return client_fn(context, search_path)

    return ClientApp(client_fn=node_client, mods=[secaggplus_when_asked])


app = make_client_app()
