"""Hydra composition, run-config mapping and validation, with the real conf/."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from fl_app.config import CONF_DIR, ConfigError, compose_config, load_config

ROOT = Path(__file__).resolve().parents[2]


def pyproject_run_config() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)["tool"]["flwr"]["app"]["config"]


def test_public_run_config_keys_are_exactly_the_documented_five():
    assert set(pyproject_run_config()) == {
        "privacy",
        "strategy",
        "num-server-rounds",
        "output-dir",
        "overrides",
    }


def test_pyproject_defaults_equal_conf_defaults():
    defaults = compose_config()
    run_config = pyproject_run_config()
    assert run_config["privacy"] == defaults.privacy.name
    assert run_config["strategy"] == defaults.strategy.name
    assert run_config["num-server-rounds"] == defaults.num_rounds
    assert run_config["output-dir"] == defaults.output_dir
    assert run_config["overrides"] == ""
    assert load_config(run_config) == defaults


def test_run_config_maps_onto_overrides():
    cfg = load_config(
        {
            "privacy": "none",  # the non-default choices
            "strategy": "fedprox",
            "num-server-rounds": 5,
            "output-dir": "/tmp/it's here",
            "overrides": "task=breast_cancer task.model=mlp partition=dirichlet "
            "partition.alpha=0.3 train.local_epochs=3",
        }
    )
    assert cfg.num_rounds == 5
    assert cfg.output_dir == "/tmp/it's here"
    assert cfg.task.name == "breast_cancer"
    assert cfg.partition.name == "dirichlet"
    assert cfg.partition.alpha == 0.3
    assert cfg.train.local_epochs == 3


@pytest.mark.parametrize(
    ("group", "key"),
    [("task", "name"), ("privacy", "name"), ("strategy", "name"), ("partition", "name"),
     ("federation", "name"), ("he", "preset")],
)  # fmt: skip
def test_every_group_option_composes(group, key):
    options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
    assert options
    needs = {"natural": ["partition.by=site", "task.source=fl_app.ml.sources.table"]}
    for option in options:
        cfg = compose_config([f"{group}={option}", *needs.get(option, [])])
        assert getattr(getattr(cfg, group), key) == option


def test_he_is_the_default_and_every_he_preset_exists_in_the_crypto_layer():
    from fl_app.crypto.presets import PRESETS

    cfg = compose_config()
    assert (cfg.privacy.name, cfg.strategy.name, cfg.he.preset) == ("he", "fedavg", "seeded")
    assert {p.stem for p in (CONF_DIR / "he").glob("*.yaml")} == set(PRESETS)


def test_the_composed_config_is_typed_and_renders_as_plain_yaml():
    from fl_app.config import to_yaml
    from fl_app.config.schema import AppConfig, SecAggConfig

    cfg = compose_config(["task=breast_cancer", "privacy=secagg"])
    assert isinstance(cfg, AppConfig) and isinstance(cfg.privacy, SecAggConfig)
    assert isinstance(cfg.task.model_args, dict) and isinstance(cfg.task.objective.metrics, list)
    assert OmegaConf.create(to_yaml(cfg)).task.model == "mlp"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["task=mnist"], "Could not find 'task/mnist'"),
        (["strategy=fedsgd"], "Available options in 'strategy'"),
        (["privacy=fedavg"], "Available options in 'privacy'"),
        (["num_rounds=-1"], "num_rounds=-1 is invalid: allowed an integer >= 1"),
        (["num_rounds=abc"], "num_rounds"),
        (["partition=dirichlet", "partition.alpha=0"], "partition.alpha=0.0 is invalid"),
        (["partition.alpha=-0.5"], "partition.alpha=-0.5 is invalid: allowed a number > 0"),
        (["strategy.min_available_clients=11"], r"allowed 1\.\.10"),
        (["strategy.min_fit_clients=20"], "strategy.min_fit_clients=20"),
        (["federation.num_supernodes=0"], "federation.num_supernodes=0"),
        (["strategy.fraction_fit=1.5"], "strategy.fraction_fit=1.5"),
        (["task.model=cnn", "task=breast_cancer"], "only with task=digits"),
        (["train.optimizer=rmsprop"], "train.optimizer='rmsprop'"),
        (["train.nope=1"], "nope"),
        (["resume=true"], "resume=True is invalid"),
        (["privacy=he", "strategy.centralized_evaluation=true"], "plaintext weights"),
        (["he.preset=tiny"], "he.preset='tiny' is invalid: allowed one of"),
        (["he.max_examples=0"], "he.max_examples=0"),
        (["privacy=secagg", "privacy.reconstruction_threshold=5"], "<= strategy.min_fit"),
        (["federation.poll_interval=2"], r"federation.poll_interval=2.0 is invalid: allowed <= fe"),
        (["strategy.evaluate_every=0"], "strategy.evaluate_every=0 is invalid"),
    ],
)
def test_invalid_values_fail_with_the_key_and_what_is_allowed(overrides, message):
    with pytest.raises(ConfigError, match=message):
        compose_config(overrides)


def test_dedicated_keys_cannot_be_set_through_overrides():
    with pytest.raises(ConfigError, match="use the run-config key 'num-server-rounds'"):
        load_config({"overrides": "num_rounds=4"})


def test_unparsable_overrides_are_reported():
    with pytest.raises(ConfigError, match="could not be parsed"):
        load_config({"overrides": "task=["})
