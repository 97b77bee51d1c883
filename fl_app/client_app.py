"""Flower ClientApp of fl_app (named in pyproject.toml)."""

from flwr.client import ClientApp

from fl_app.fl.factory import client_fn

app = ClientApp(client_fn=client_fn)
