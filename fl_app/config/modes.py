"""What each privacy mode (the `privacy/` config group) requires of the rest of the config.

The modes themselves — what a client sends, what the server adds — are objects of the
Flower layer (fl_app.fl.modes). Here are only the facts the config checks need before
anything starts; differential privacy is not a mode but an option of every mode
(`dp.enabled`; fl_app.privacy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig

from fl_app.config.errors import ConfigError, require

Check = Callable[[DictConfig], None]


@dataclass(frozen=True)
class ModeFacts:
    """One privacy mode, as far as configuration goes."""

    name: str  # the privacy/ option
    server_sees_aggregate: bool  # central evaluation and server optimisers need it
    server_sees_individual_updates: bool  # what the DP report must say
    checks: tuple[Check, ...] = ()  # config checks for this mode only


def _no_centralized_evaluation(cfg: DictConfig) -> None:
    require(
        cfg.strategy.centralized_evaluation is not True,
        "strategy.centralized_evaluation",
        cfg.strategy.centralized_evaluation,
        "false or null with privacy=he (the server never holds plaintext weights)",
    )


def _secagg_parameters(cfg: DictConfig) -> None:
    require(
        cfg.privacy.reconstruction_threshold <= cfg.strategy.min_fit_clients,
        "privacy.reconstruction_threshold",
        cfg.privacy.reconstruction_threshold,
        f"<= strategy.min_fit_clients ({cfg.strategy.min_fit_clients})",
    )


MODES = {
    facts.name: facts
    for facts in (
        ModeFacts("none", server_sees_aggregate=True, server_sees_individual_updates=True),
        ModeFacts(
            "he",
            server_sees_aggregate=False,
            server_sees_individual_updates=False,
            checks=(_no_centralized_evaluation,),
        ),
        ModeFacts(
            "secagg",
            server_sees_aggregate=True,
            server_sees_individual_updates=False,
            checks=(_secagg_parameters,),
        ),
    )
}


def mode_of(cfg: DictConfig) -> ModeFacts:
    """The privacy mode a composed config selects."""
    name = cfg.privacy.name
    if name not in MODES:
        raise ConfigError(f"privacy.name={name!r} is invalid: allowed one of {sorted(MODES)}")
    return MODES[name]


def evaluates_centrally(cfg: DictConfig) -> bool:
    """Whether the server evaluates each aggregate on its test set."""
    chosen = cfg.strategy.centralized_evaluation
    return mode_of(cfg).server_sees_aggregate if chosen is None else bool(chosen)
