"""The mode table names real classes and workflows, and the apps follow it."""

from __future__ import annotations

import pytest
from flwr.client import NumPyClient
from flwr.server.workflow import DefaultWorkflow
from hydra.utils import get_class, get_method

from fl_app.config import CONF_DIR, MODES, ConfigError, compose_config, mode_of
from fl_app.fl.client import KerasClient
from fl_app.fl.he_strategy import HEFedAvg
from fl_app.fl.strategy import RecordingFedAvg


def test_every_strategy_option_is_a_mode_and_every_mode_an_option():
    options = {p.stem for p in (CONF_DIR / "strategy").glob("*.yaml")}
    assert options == set(MODES)
    for name in options:
        assert mode_of(compose_config([f"strategy={name}"])).name == name


@pytest.mark.parametrize("name", sorted(MODES))
def test_every_entry_resolves_to_what_it_says(name):
    mode = MODES[name]
    assert issubclass(get_class(mode.strategy), RecordingFedAvg)
    assert issubclass(get_class(mode.client), KerasClient)
    assert issubclass(get_class(mode.client), NumPyClient)
    workflow = get_method(mode.workflow)(compose_config([f"strategy={name}"]))
    assert isinstance(workflow, DefaultWorkflow)
    # only encrypted modes run the HE strategy, and they never show the server an update
    assert issubclass(get_class(mode.strategy), HEFedAvg) == mode.encrypted
    assert not (mode.encrypted and mode.server_sees_individual_updates)


def test_only_the_secagg_mode_has_secagg_keys():
    assert "secagg_num_shares" in compose_config(["strategy=secagg"]).strategy
    with pytest.raises(ConfigError, match="secagg_num_shares"):
        compose_config(["strategy=he", "strategy.secagg_num_shares=5"])


def test_the_strategy_options_hydra_offers_are_exactly_the_modes():
    with pytest.raises(ConfigError, match="Available options in 'strategy'") as err:
        compose_config(["strategy=fedprox"])
    listed = err.value.args[0].split("Available options in 'strategy':")[1].split("Config")[0]
    assert sorted(listed.split()) == sorted(MODES)
