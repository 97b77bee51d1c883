"""The mode table: each privacy mode is one entry saying what runs and what is checked.

A mode is a choice of the `strategy/` config group. Its entry names the ServerApp's
Strategy class, the ClientApp's NumPyClient class and the Flower workflow of the round
loop, plus the config checks that only apply to it. Differential privacy is not a mode
but an option of every mode (`dp.enabled`; fl_app.privacy).

Classes are named by import path — as pyproject names Flower's apps and Hydra's
`_target_` names callables — because the config layer that reads this table knows no
Flower; `fl_app.fl.factory` resolves them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig

from fl_app.config.errors import ConfigError, require

Check = Callable[[DictConfig], None]


@dataclass(frozen=True)
class Mode:
    """One privacy mode."""

    name: str  # the strategy/ option
    strategy: str  # import path of the ServerApp's Strategy class
    client: str  # import path of the ClientApp's NumPyClient class
    workflow: str  # import path of the function that builds the round loop's workflow
    encrypted: bool  # the server holds only ciphertexts: it loads the public HE context
    server_sees_individual_updates: bool  # what the DP report must say
    checks: tuple[Check, ...] = ()  # config checks for this mode only


def _no_centralized_evaluation(cfg: DictConfig) -> None:
    require(
        not cfg.strategy.centralized_evaluation,
        "strategy.centralized_evaluation",
        cfg.strategy.centralized_evaluation,
        "false with strategy=he (the server never holds plaintext weights)",
    )


def _secagg_parameters(cfg: DictConfig) -> None:
    strat = cfg.strategy
    require(
        strat.secagg_reconstruction_threshold <= strat.min_fit_clients,
        "strategy.secagg_reconstruction_threshold",
        strat.secagg_reconstruction_threshold,
        f"<= strategy.min_fit_clients ({strat.min_fit_clients})",
    )


_PLAIN_STRATEGY = "fl_app.fl.strategy.RecordingFedAvg"
_PLAIN_CLIENT = "fl_app.fl.client.KerasClient"
_DEFAULT_LOOP = "fl_app.fl.rounds.default_workflow"

# fmt: off
MODES = {mode.name: mode for mode in (
    Mode("fedavg", _PLAIN_STRATEGY, _PLAIN_CLIENT, _DEFAULT_LOOP,
         encrypted=False, server_sees_individual_updates=True),
    Mode("he", "fl_app.fl.he_strategy.HEFedAvg", "fl_app.fl.he_client.HEKerasClient",
         _DEFAULT_LOOP, encrypted=True, server_sees_individual_updates=False,
         checks=(_no_centralized_evaluation,)),
    Mode("secagg", _PLAIN_STRATEGY, _PLAIN_CLIENT, "fl_app.fl.rounds.secagg_workflow",
         encrypted=False, server_sees_individual_updates=False,
         checks=(_secagg_parameters,)),
)}
# fmt: on


def mode_of(cfg: DictConfig) -> Mode:
    """The mode a composed config selects."""
    name = cfg.strategy.name
    if name not in MODES:
        raise ConfigError(f"strategy.name={name!r} is invalid: allowed one of {sorted(MODES)}")
    return MODES[name]
