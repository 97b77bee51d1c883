"""Hydra configuration: typed schemas, the mode table, composition from Flower's run
config, and the checks that fail a bad value before any training.

`conf/` is the single source of every parameter; each default lives once, in
`fl_app.config.schema`.
"""

from fl_app.config.compose import CONF_DIR, compose_config, load_config, to_yaml
from fl_app.config.errors import ConfigError
from fl_app.config.modes import MODES, ModeFacts, evaluates_centrally, mode_of
from fl_app.config.validate import validate

__all__ = [
    "CONF_DIR",
    "MODES",
    "ConfigError",
    "ModeFacts",
    "compose_config",
    "evaluates_centrally",
    "load_config",
    "mode_of",
    "to_yaml",
    "validate",
]
