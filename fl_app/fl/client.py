"""The NumPyClient that wraps a Keras model."""

from __future__ import annotations

import time
from collections.abc import Callable

import keras
from flwr.client import NumPyClient
from flwr.common import NDArrays, Scalar

from fl_app.config.schema import TrainConfig
from fl_app.fl.modes import AggregateRefused, Codec
from fl_app.fl.protocol import (
    EVAL_EXAMPLES_KEY,
    EVALUATE_FIRST_KEY,
    EXAMPLES_KEY,
    METRIC_SIGNATURE_KEY,
    METRIC_STATE_KEY,
    PRIOR_EXAMPLES,
    PRIOR_PREFIX,
    PROXIMAL_MU_KEY,
    REFUSED_KEY,
    ROUND_KEY,
    SAMPLED_KEY,
    STATS_KEY,
    STATS_REQUEST_KEY,
    STATS_TOTAL_KEY,
)
from fl_app.fl.record_dp import RecordDP
from fl_app.ml.data import ClientData
from fl_app.ml.dpsgd import ClipAndNoise
from fl_app.ml.metric_states import MetricStates
from fl_app.ml.models import check_fits, evaluate, reset_optimizer, train, weights_of
from fl_app.ml.statistics import moments, scaled_with
from fl_app.privacy.dp import privatize


class KerasClient(NumPyClient):
    """Trains and evaluates one holder's Keras model on data that never leaves it.

    The privacy mode's `codec` is the edge (fl_app.fl.modes): it turns what arrives into
    weights and the trained weights into what leaves (under HE: decrypt, encrypt), so
    training never sees a ciphertext. An aggregate the codec refuses (AggregateRefused)
    is answered with REFUSED_KEY and its reason.

    With `proximal_mu` in a fit's config (Flower's FedProx sends it), training adds
    (mu / 2) * ||w - w_received||^2 to the loss. With `dp`, the update is clipped and
    noised before it reaches the codec, every client's aggregation weight is 1
    (DP-FedAvg's unweighted mean: an example-count weight would let a large client
    exceed the clip bound), and the training loss and accuracy, which are not
    privatised, are not reported. With `record_dp`, training is DP-SGD
    (fl_app.fl.record_dp): the weight stays the example count, and the client reports
    the ε its records have spent instead of its training loss. Under client-level DP
    the evaluation reports weight 1 too, not the test split's size.
    """

    def __init__(
        self,
        model_factory: Callable[[], keras.Model],
        data: ClientData,
        *,
        codec: Codec,
        train: TrainConfig,
        seed: int,
        dp: ClipAndNoise | None = None,
        record_dp: RecordDP | None = None,
        federated_statistics: bool = False,
    ) -> None:
        self._model_factory = model_factory
        self._net: keras.Model | None = None
        self.data = data
        self.codec = codec
        self.local_epochs = train.local_epochs
        self.batch_size = train.batch_size
        self.seed = seed
        self.dp = dp
        self.record_dp = record_dp
        # `data` is unscaled: it is standardised with the holders' summed statistics
        self.federated_statistics = federated_statistics
        self._raw = data

    @property
    def weight(self) -> int:
        """This client's aggregation weight: its example count, or 1 under DP."""
        return 1 if self.dp is not None else len(self.data.train)

    @property
    def net(self) -> keras.Model:
        """The model, built on first use (a properties query needs none)."""
        if self._net is None:
            self._net = self._model_factory()
            check_fits(self._net, self.data.train)
        return self._net

    @property
    def eval_weight(self) -> int:
        """What this client's evaluation weighs: its test split's size, or 1 under DP."""
        return 1 if self.dp is not None else len(self.data.test)

    def get_properties(self, config: dict[str, Scalar]) -> dict[str, Scalar]:
        properties = {EXAMPLES_KEY: self.weight, EVAL_EXAMPLES_KEY: self.eval_weight}
        request = config.get(STATS_REQUEST_KEY)
        if self.federated_statistics and request is not None:  # fl_app.fl.statistics
            own = moments(self._raw.train.x)
            properties[STATS_KEY] = self.codec.encode_statistics(own, str(request), config)
        return properties

    def _scale(self, config: dict[str, Scalar]) -> None:
        """Standardise the data with the holders' summed statistics (once per total)."""
        if not self.federated_statistics:
            return
        total = config.get(STATS_TOTAL_KEY)
        if not isinstance(total, bytes):
            raise ValueError("no federated statistics arrived with the instruction")
        self.data = scaled_with(
            self._raw, total, lambda: self.codec.decode_statistics(total, config)
        )

    def get_parameters(self, config: dict[str, Scalar]) -> NDArrays:
        return weights_of(self.net)

    def fit(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        tick = time.perf_counter()
        try:
            start = self.codec.decode(parameters, config)
        except AggregateRefused as err:  # say so: the server counts refusals
            return [], 0, {REFUSED_KEY: str(err)}
        self._scale(config)
        crypto_seconds = time.perf_counter() - tick
        self.net.set_weights(start)
        prior = self._prior_evaluation() if config.get(EVALUATE_FIRST_KEY) else {}
        reset_optimizer(self.net)  # a fresh optimizer each round, as a new model has
        started = time.perf_counter()
        mu = float(config.get(PROXIMAL_MU_KEY, 0.0))  # FedProx's term, 0: none
        if self.record_dp is not None:
            metrics = self.record_dp.train(
                self.net, self.data.train, epochs=self.local_epochs, batch_size=self.batch_size,
                config=config, proximal_mu=mu,
            )  # fmt: skip
        else:
            metrics = train(
                self.net,
                self.data.train,
                epochs=self.local_epochs,
                batch_size=self.batch_size,
                seed=self.seed + int(config.get(ROUND_KEY, 0)),
                proximal_mu=mu,
            )
        metrics["train_seconds"] = time.perf_counter() - started
        weights = weights_of(self.net)
        if self.dp is not None:
            sampled = int(config.get(SAMPLED_KEY, 0))  # 0 is refused with a clear error
            weights = privatize(start, weights, self.dp, clients=sampled)
            metrics = {"train_seconds": metrics["train_seconds"]}
        tick = time.perf_counter()
        out = self.codec.encode(weights, self.weight, config, [w.path for w in self.net.weights])
        if self.dp is None:  # under DP a client reports its training time only
            # decrypting what arrived and encrypting what leaves (0 in plaintext)
            metrics["crypto_seconds"] = crypto_seconds + time.perf_counter() - tick
        return out, self.weight, {**metrics, **prior}

    def _prior_evaluation(self) -> dict[str, Scalar]:
        """The received global model on the local test split, as PRIOR_PREFIX metrics."""
        loss, examples, metrics = self._evaluate_net()
        prior = {f"{PRIOR_PREFIX}{k}": v for k, v in {"loss": loss, **metrics}.items()}
        return {**prior, PRIOR_EXAMPLES: examples}

    def evaluate(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[float, int, dict[str, Scalar]]:
        try:
            weights = self.codec.decode(parameters, config)  # refused before any model work
        except AggregateRefused as err:
            return 0.0, 0, {REFUSED_KEY: str(err)}
        self._scale(config)
        self.net.set_weights(weights)
        return self._evaluate_net()

    def _evaluate_net(self) -> tuple[float, int, dict[str, Scalar]]:
        started = time.perf_counter()
        results = evaluate(self.net, self.data.test, batch_size=self.batch_size)
        elapsed = time.perf_counter() - started
        loss = results.pop("loss")
        metrics: dict[str, Scalar] = {**results, "eval_seconds": elapsed}
        # Under client-level DP no count leaves the client: every evaluation weighs 1,
        # and no metric state is sent (its counts are the test split's size).
        if self.dp is None:
            states = MetricStates(self.net)
            metrics[METRIC_STATE_KEY] = states.state().astype("<f8").tobytes()
            metrics[METRIC_SIGNATURE_KEY] = states.signature
        return loss, self.eval_weight, metrics
