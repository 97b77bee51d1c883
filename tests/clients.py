"""KerasClient built as the ClientApp builds it, for client tests (imported as
`from clients import ...`): plaintext, or with the HE codec."""

from __future__ import annotations

from typing import Any

from fl_app.config.schema import TrainConfig
from fl_app.config.task import data_spec
from fl_app.crypto.presets import Preset
from fl_app.fl.client import KerasClient
from fl_app.fl.factory import new_model
from fl_app.fl.modes import Codec
from fl_app.fl.modes.he import HECodec
from fl_app.ml.data import PartitionSpec, load_client_data


def keras_client(
    factory: Any,
    data: Any,
    *,
    local_epochs: int = 1,
    batch_size: int = 16,
    seed: int = 0,
    codec: Codec | None = None,
    **options: Any,
) -> KerasClient:
    """A client of privacy=none (or of `codec`'s mode) training `factory()`'s model."""
    train = TrainConfig(local_epochs=local_epochs, batch_size=batch_size)
    return KerasClient(factory, data, codec=codec or Codec(), train=train, seed=seed, **options)


def he_client(
    factory: Any, data: Any, *, preset: Preset, secret_context: str, **options: Any
) -> KerasClient:
    """A client of privacy=he holding the secret context at `secret_context`."""
    return keras_client(factory, data, codec=HECodec(preset, secret_context), **options)


def client_of(cfg: Any, partition_id: int = 0) -> KerasClient:
    """A privacy=none client of partition `partition_id` of 3 (IID) of `cfg`'s task."""
    data = load_client_data(
        data_spec(cfg.task), PartitionSpec("iid", 3), partition_id,
        server_test_fraction=0.2, client_test_fraction=0.2, seed=int(cfg.seed),
    )  # fmt: skip
    return keras_client(lambda: new_model(cfg), data, local_epochs=2, batch_size=16, seed=1)
