"""The server's strategy as the ServerApp builds it: a server optimiser's state goes into
every checkpoint, so a resumed run continues exactly where the killed one was."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from fakes import fit_result
from flwr.common import parameters_to_ndarrays

from fl_app.config import compose_config
from fl_app.fl.factory import build_strategy, new_model
from fl_app.fl.modes import mode_for
from fl_app.ml.models import weights_of
from fl_app.run.state import RunState

IDENTITY = {"privacy": "secagg", "strategy": "fedadam"}


def strategy_of(cfg, state, net):
    grid = SimpleNamespace(bytes_up=0, bytes_down=0)  # SecAgg+: no count query goes out
    return build_strategy(cfg, mode_for(cfg), state, net=net, keys=None, grid=grid)


def results(weights, shift: float):
    """What two clients send: the global weights moved by `shift` and `2 * shift`."""
    return [
        fit_result(cid, [w + k * shift for w in weights], 10 * k) for k, cid in ((1, "a"), (2, "b"))
    ]


@pytest.mark.parametrize("name", ["fedadam", "fedyogi", "fedavgm"])
def test_a_resumed_server_optimiser_continues_its_moments_bit_for_bit(name, tmp_path):
    cfg = compose_config([f"strategy={name}", "privacy=secagg", "task=breast_cancer"])
    net = new_model(cfg)
    run_dir = tmp_path / "run"
    state = RunState.fresh(run_dir, IDENTITY, weights_of(net))
    strategy = strategy_of(cfg, state, net)
    first, _ = strategy.aggregate_fit(1, results(state.weights, 0.1), [])
    assert first is not None and state.server_state  # the moments are in the checkpoint
    shutil.copy(run_dir / "checkpoint.npz", tmp_path / "after_round_1.npz")
    second, _ = strategy.aggregate_fit(2, results(state.weights, 0.2), [])

    shutil.copy(tmp_path / "after_round_1.npz", run_dir / "checkpoint.npz")  # killed here
    resumed = RunState.resume(run_dir, IDENTITY)
    assert sorted(resumed.server_state) == sorted(state.server_state)
    again, _ = strategy_of(cfg, resumed, net).aggregate_fit(1, results(resumed.weights, 0.2), [])
    for a, b in zip(parameters_to_ndarrays(second), parameters_to_ndarrays(again), strict=True):
        assert np.array_equal(a, b)

    forgetful = RunState.resume(run_dir, IDENTITY)
    forgetful.server_state = {}  # what a resume that lost the moments would compute
    without = strategy_of(cfg, forgetful, net)
    if name == "fedavgm":  # Flower's FedAvgM insists on the momentum of round 1
        with pytest.raises(AssertionError, match="Momentum should have been created"):
            without.aggregate_fit(1, results(resumed.weights, 0.2), [])
        return
    lost, _ = without.aggregate_fit(1, results(resumed.weights, 0.2), [])
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(parameters_to_ndarrays(second), parameters_to_ndarrays(lost), strict=True)
    )


def test_fedavg_and_fedprox_keep_no_server_state(tmp_path):
    for name in ("fedavg", "fedprox"):
        cfg = compose_config([f"strategy={name}", "privacy=secagg", "task=breast_cancer"])
        net = new_model(cfg)
        state = RunState.fresh(tmp_path / name, IDENTITY, weights_of(net))
        strategy_of(cfg, state, net).aggregate_fit(1, results(state.weights, 0.1), [])
        assert state.server_state == {}
