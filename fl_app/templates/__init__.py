"""The files `fl-app new` writes (package data, read with importlib.resources)."""
