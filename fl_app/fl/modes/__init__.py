"""Privacy modes, one object each, built once from the config (`privacy=`):

    none    fl_app/fl/modes/base.py    weights in the clear; the algorithm aggregates
    he      fl_app/fl/modes/he.py      clients encrypt, the server adds ciphertexts
    secagg  fl_app/fl/modes/secagg.py  Flower's SecAgg+ masks; the server sees the sum

Each gives the client its `Codec` and the server its `Aggregator` around an unchanged
aggregation algorithm (`strategy=`), as Flower wraps privacy around a strategy.
"""

from __future__ import annotations

from fl_app.config import MODES as FACTS
from fl_app.config.schema import AppConfig
from fl_app.fl.modes.base import AggregateRefused, Aggregator, Codec, Mode, ServerSetup
from fl_app.fl.modes.he import HEMode
from fl_app.fl.modes.secagg import SecAggMode

MODES: dict[str, Mode] = {
    "none": Mode(FACTS["none"]),
    "he": HEMode(FACTS["he"]),
    "secagg": SecAggMode(FACTS["secagg"]),
}


def mode_for(cfg: AppConfig) -> Mode:
    """The privacy mode `cfg` selects (validated by the config layer)."""
    return MODES[cfg.privacy.name]


__all__ = ["MODES", "AggregateRefused", "Aggregator", "Codec", "Mode", "ServerSetup", "mode_for"]
