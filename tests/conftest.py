"""Fixtures shared by test modules."""

from __future__ import annotations

import pytest

from fl_app.crypto.keys import build_context, context_from, public_bytes
from fl_app.crypto.presets import get_preset


@pytest.fixture(scope="module")
def keys():
    """The default (seeded) preset, a secret context and its public copy (real keys)."""
    preset = get_preset("seeded")
    secret = build_context(preset)
    return preset, secret, context_from(public_bytes(secret))


@pytest.fixture(scope="module")
def holder_data():
    """breast_cancer's config and the first of 3 IID holders' data (real partitions)."""
    from fl_app.config import compose_config
    from fl_app.config.task import data_spec
    from fl_app.ml.data import PartitionSpec, load_client_data

    cfg = compose_config(["task=breast_cancer"])
    data = load_client_data(
        data_spec(cfg.task), PartitionSpec("iid", 3), 0,
        server_test_fraction=0.2, client_test_fraction=0.2, seed=int(cfg.seed),
    )  # fmt: skip
    return cfg, data


@pytest.fixture(scope="module")
def superlink(tmp_path_factory):
    """A local simulation SuperLink of the test module's own (its FLWR_HOME and free
    loopback ports), stopped by PID at the module's end."""
    from fl_app.ops.local_superlink import LocalSuperLink

    with LocalSuperLink(tmp_path_factory.mktemp("flwr_home")) as link:
        yield link
