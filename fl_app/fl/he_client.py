"""The NumPyClient under HE: decrypt what arrives, encrypt what leaves, train in between."""

from __future__ import annotations

from collections.abc import Callable

import keras
from flwr.common import NDArrays, Scalar

from fl_app.crypto.keys import require_preset
from fl_app.crypto.payload import (
    PayloadError,
    WeightBoundError,
    decrypt_aggregate,
    encrypt_update,
    to_arrays,
    to_payload,
)
from fl_app.crypto.presets import Preset
from fl_app.fl.client import AggregateRefused, KerasClient
from fl_app.fl.clients import secret_context_at
from fl_app.fl.protocol import (
    ENCRYPTED_KEY,
    NODE_SECRET_KEY,
    REFERENCE_KEY,
    ROUND_KEY,
    RUN_TAG_KEY,
    SECRET_PATH_KEY,
)
from fl_app.fl.record_dp import RecordDP
from fl_app.ml.data import ClientData
from fl_app.privacy.dp import DPSettings


class HEKerasClient(KerasClient):
    """KerasClient whose traffic is encrypted under the federation's shared HE key.

    Weighting happens here: the update is multiplied by n_k / R before encryption, so
    the server only adds; the decrypted aggregate is divided by its total weight.
    """

    def __init__(
        self,
        model_factory: Callable[[], keras.Model],
        data: ClientData,
        *,
        preset: Preset,
        secret_context: str,
        local_epochs: int,
        batch_size: int,
        seed: int,
        dp: DPSettings | None = None,
        record_dp: RecordDP | None = None,
    ) -> None:
        super().__init__(
            model_factory,
            data,
            local_epochs=local_epochs,
            batch_size=batch_size,
            seed=seed,
            dp=dp,
            record_dp=record_dp,
        )
        self.preset = preset
        self._secret_path = secret_context
        self._context = None

    def _secret_context(self, config: dict[str, Scalar]):
        if self._context is None:
            path = self._secret_path or str(config.get(SECRET_PATH_KEY, ""))
            if not path:
                raise ValueError(
                    "no HE secret context configured: set he.secret_context (or the node "
                    f"config key '{NODE_SECRET_KEY}') to the path of secret.ctx"
                )
            self._context = require_preset(secret_context_at(path), self.preset, path)
        return self._context

    def weights_in(self, parameters: NDArrays, config: dict[str, Scalar]) -> NDArrays:
        if not config.get(ENCRYPTED_KEY, False):
            return parameters  # the initial model is public: random init, no data
        try:
            return decrypt_aggregate(
                self._secret_context(config), self.preset, to_payload(parameters)
            )
        except PayloadError as err:
            raise AggregateRefused(f"the aggregate is refused: {err}") from err

    def weights_out(
        self, weights: NDArrays, num_examples: int, config: dict[str, Scalar]
    ) -> NDArrays:
        reference = float(config[REFERENCE_KEY])
        bound_to = f"{config.get(RUN_TAG_KEY, '')}/{config.get(ROUND_KEY, 0)}"
        try:
            payload = encrypt_update(
                self._secret_context(config), self.preset, weights, num_examples / reference,
                bound_to,
            )  # fmt: skip
        except WeightBoundError as err:  # name the layer, not only the array's position
            raise ValueError(f"{self.net.weights[err.index].path}: {err}") from err
        return to_arrays(payload)
