"""Issue 13: a ClientApp call pays only for its own work. A second call in the same
process builds nothing, yet runs and partitions never share state."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from fl_app.config import compose
from fl_app.fl import client_fn as clients
from fl_app.fl.factory import new_model, node_data
from fl_app.ml.models import reset_optimizer, train, weights_of

RUN = {"privacy": "none", "num-server-rounds": 1, "overrides": "federation.num_supernodes=4"}


def context(partition: int, run_config: dict = RUN) -> SimpleNamespace:
    node = {"partition-id": partition, "num-partitions": 4}
    return SimpleNamespace(run_config=run_config, node_config=node, run_id=1)


@pytest.fixture
def counted(monkeypatch):
    """Counts of configs composed and models built behind the caches."""
    clients.clear()
    counts = {"config": 0, "model": 0}
    load, build = compose.load_config, clients.new_model

    def counting_load(*args):
        counts["config"] += 1
        return load(*args)

    def counting_build(cfg):
        counts["model"] += 1
        return build(cfg)

    monkeypatch.setattr(compose, "load_config", counting_load)
    monkeypatch.setattr(clients, "new_model", counting_build)
    yield counts
    clients.clear()


def numpy_client(ctx):
    return clients.client_fn(ctx).numpy_client


def test_a_second_call_in_the_same_process_builds_nothing(counted):
    first = numpy_client(context(0))
    start = weights_of(first.net)
    first.fit(start, {"server-round": 1})
    second = numpy_client(context(0))
    second.fit(start, {"server-round": 1})
    second.evaluate(start, {})
    assert counted == {"config": 1, "model": 1}
    assert second.net is first.net  # the compiled model, with its traced functions
    assert second.data is first.data


def test_partitions_and_runs_in_one_process_never_share_state(counted):
    start = weights_of(numpy_client(context(0)).net)
    fresh = {}
    for partition in (0, 1):  # what a brand-new model trains to, per partition
        cfg = clients.config_for(clients.run_key(RUN), None)
        net = new_model(cfg)
        net.set_weights(start)
        data, seed = node_data(cfg, {"partition-id": partition, "num-partitions": 4})
        train(net, data.train, epochs=2, batch_size=16, seed=seed + 1)
        fresh[partition] = weights_of(net)
    for partition in (0, 1, 0):  # reused model, interleaved partitions
        client = numpy_client(context(partition))
        weights, _, _ = client.fit(start, {"server-round": 1})
        assert all(np.array_equal(a, b) for a, b in zip(weights, fresh[partition], strict=True))
    assert counted["model"] == 1  # one model served both partitions, bit-exact each time
    a, b = numpy_client(context(0)), numpy_client(context(1))
    assert len(a.data.train) + len(b.data.train) > 0
    assert not np.array_equal(a.data.train.x[:3], b.data.train.x[:3])
    other_run = {**RUN, "overrides": "federation.num_supernodes=4 seed=7"}
    c = numpy_client(context(0, other_run))
    assert c.net is not a.net and counted["model"] == 2  # another config, its own model
    assert not all(
        np.array_equal(x, y) for x, y in zip(weights_of(c.net), start, strict=True)
    )  # seed 7 initialises differently


def test_reset_optimizer_restores_the_fresh_state():
    cfg = clients.config_for(clients.run_key(RUN), None)
    net = new_model(cfg)
    data, _ = node_data(cfg, {"partition-id": 0, "num-partitions": 4})
    reset_optimizer(net)
    fresh = [np.array(v.numpy()) for v in net.optimizer.variables]
    train(net, data.train, epochs=1, batch_size=16, seed=0)
    assert int(net.optimizer.iterations.numpy()) > 0
    reset_optimizer(net)
    assert all(
        np.array_equal(v.numpy(), f) for v, f in zip(net.optimizer.variables, fresh, strict=True)
    )
    clients.clear()
