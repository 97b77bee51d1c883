"""Flower ClientApp of fl_app (named in pyproject.toml): one app for every mode."""

from flwr.client import ClientApp

from fl_app.fl.factory import client_fn
from fl_app.fl.mods import secaggplus_when_asked

app = ClientApp(client_fn=client_fn, mods=[secaggplus_when_asked])
