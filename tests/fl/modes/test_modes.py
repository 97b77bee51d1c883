"""The privacy modes and the algorithms: every option is a real object, each mode runs
the algorithms it can and refuses the others before anything is written."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.common import ndarrays_to_parameters
from flwr.server.strategy import FedAdam, FedAvg, FedAvgM, FedProx, FedYogi, Strategy
from flwr.server.workflow import SecAggPlusWorkflow
from runs import refused_start

from fl_app.config import CONF_DIR, MODES, ConfigError, compose_config, evaluates_centrally
from fl_app.fl.factory import build_algorithm
from fl_app.fl.modes import MODES as MODE_OBJECTS
from fl_app.fl.modes import mode_for
from fl_app.fl.modes.he import HEAggregator, HECodec
from fl_app.ml.models import build_model
from fl_app.ml.objective import Objective

ALGORITHMS = {
    "fedavg": FedAvg, "fedprox": FedProx, "fedavgm": FedAvgM, "fedadam": FedAdam,
    "fedyogi": FedYogi,
}  # fmt: skip


def test_every_privacy_option_is_a_mode_and_every_mode_an_option():
    options = {p.stem for p in (CONF_DIR / "privacy").glob("*.yaml")}
    assert options == set(MODES) == set(MODE_OBJECTS)
    for name in options:
        cfg = compose_config([f"privacy={name}"])
        assert mode_for(cfg).facts.name == name == cfg.privacy.name


def test_only_he_has_the_he_codec_and_aggregator_and_it_never_shows_an_update():
    for name, mode in MODE_OBJECTS.items():
        cfg = compose_config([f"privacy={name}"])
        he = isinstance(mode.codec(cfg, {}), HECodec)
        assert he == (name == "he") == (mode.aggregator.__func__ is not
                                        MODE_OBJECTS["none"].aggregator.__func__)  # fmt: skip
        assert not (he and mode.facts.server_sees_individual_updates)
        assert not (he and mode.facts.server_sees_aggregate)
        assert isinstance(mode.fit_workflow(cfg), SecAggPlusWorkflow) == (name == "secagg")
    assert HEAggregator.__module__ == "fl_app.fl.modes.he"


def test_only_secagg_has_secagg_keys():
    assert compose_config(["privacy=secagg"]).privacy.num_shares == 3
    with pytest.raises(ConfigError, match="num_shares"):
        compose_config(["privacy=he", "privacy.num_shares=5"])


def tiny_net():
    return build_model(
        "mlp", model_args={"input_shape": (3,), "outputs": 2},
        objective=Objective("sparse_categorical_crossentropy", ("accuracy",), "accuracy", True),
        optimizer="adam", learning_rate=0.01, seed=0,
    )  # fmt: skip


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_strategy_option_is_flowers_own_algorithm(name, tmp_path):
    cfg = compose_config([f"strategy={name}", "privacy=none"])
    net = tiny_net()
    initial = ndarrays_to_parameters([np.asarray(w) for w in net.get_weights()])
    algorithm = build_algorithm(cfg, initial, net, tmp_path)
    assert type(algorithm) is ALGORITHMS[name]
    assert algorithm.min_fit_clients == cfg.strategy.min_fit_clients
    assert {p.stem for p in (CONF_DIR / "strategy").glob("*.yaml")} == set(ALGORITHMS)


def test_an_unknown_algorithm_argument_is_refused_naming_it(tmp_path):
    cfg = compose_config(["strategy=fedadam", "privacy=none", "+strategy.algorithm.betta=0.5"])
    net = tiny_net()
    initial = ndarrays_to_parameters([np.asarray(w) for w in net.get_weights()])
    with pytest.raises(ConfigError, match=r"strategy.algorithm=.*betta"):
        build_algorithm(cfg, initial, net, tmp_path)


@pytest.mark.parametrize("name", ["fedadam", "fedavgm", "fedyogi"])
def test_a_server_optimiser_is_refused_under_he_before_anything_is_written(name, tmp_path):
    failure = refused_start(tmp_path / "out", "he", strategy=name)
    assert isinstance(failure.__cause__, ConfigError)
    assert "only ever holds ciphertexts" in str(failure.__cause__)
    assert not (tmp_path / "out").exists()  # no keys generated, no config written


@pytest.mark.parametrize("name", ["fedavg", "fedprox"])
def test_he_runs_the_algorithms_whose_server_side_only_adds(name):
    options = {"proximal_mu": 0.1} if name == "fedprox" else {}
    MODE_OBJECTS["he"].check_algorithm(ALGORITHMS[name](**options))


def test_an_algorithm_of_ones_own_that_changes_the_aggregate_is_refused_under_he():
    class Median(FedAvg):
        def aggregate_fit(self, server_round, results, failures):  # pragma: no cover
            return super().aggregate_fit(server_round, results, failures)

    with pytest.raises(ConfigError, match="Median is invalid with privacy=he"):
        MODE_OBJECTS["he"].check_algorithm(Median())
    for name in ("none", "secagg"):
        MODE_OBJECTS[name].check_algorithm(Median())
    assert issubclass(Median, Strategy)


def test_central_evaluation_follows_what_the_server_sees_unless_asked():
    assert evaluates_centrally(compose_config(["privacy=none"]))
    assert evaluates_centrally(compose_config(["privacy=secagg"]))
    assert not evaluates_centrally(compose_config(["privacy=he"]))
    assert not evaluates_centrally(
        compose_config(["privacy=none", "strategy.centralized_evaluation=false"])
    )
    with pytest.raises(ConfigError, match="centralized_evaluation"):
        compose_config(["privacy=he", "strategy.centralized_evaluation=true"])


def test_an_old_run_config_naming_the_mode_as_strategy_says_where_it_went():
    from fl_app.config import load_config

    with pytest.raises(ConfigError, match='privacy = "he"'):
        load_config({"strategy": "he"})
    assert load_config({"privacy": "none", "strategy": "fedprox"}).strategy.name == "fedprox"


def test_an_argument_fl_app_passes_itself_is_refused_under_strategy_algorithm(tmp_path):
    cfg = compose_config(["privacy=none", "+strategy.algorithm.fraction_fit=0.5"])
    net = tiny_net()
    initial = ndarrays_to_parameters([np.asarray(w) for w in net.get_weights()])
    with pytest.raises(ConfigError, match=r"strategy.algorithm.fraction_fit .*set strategy.fra"):
        build_algorithm(cfg, initial, net, tmp_path)
