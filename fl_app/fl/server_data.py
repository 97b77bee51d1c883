"""What the server does with the task's data, where it has it (simulation): the checks
before round 1 and the central evaluation of plaintext aggregates."""

from __future__ import annotations

import logging

import keras
from flwr.common import NDArrays, Scalar

from fl_app.config.schema import AppConfig
from fl_app.config.task import data_spec, federated_statistics, public_statistics
from fl_app.fl.statistics import ServerStatistics
from fl_app.ml.data import PartitionSpec, Split, load_server_test, pool_partitions, sample_rows
from fl_app.ml.models import check_fits, evaluate
from fl_app.ml.per_record import refuse_batch_mixing, refuse_untrained_state
from fl_app.ml.scaling import standardise
from fl_app.ml.statistics import global_statistics

logger = logging.getLogger(__name__)


def check_task(cfg: AppConfig, net: keras.Model) -> None:
    """In simulation, where the server can see the task's data: fail before round 1 when
    model and data do not fit, or Keras does not know the objective's names. Everywhere:
    a model that DP-SGD cannot train per record (dp.level=record) is refused — by its
    layers at any depth, and in simulation also by what a training step does to it."""
    record_dp = cfg.dp.enabled and cfg.dp.level == "record"
    if record_dp:
        refuse_batch_mixing(net)
    private = cfg.task.preprocess == "standardize" and not public_statistics(cfg.task)
    if private and not federated_statistics(cfg):
        logger.warning(
            "task.preprocess=standardize without task.preprocess_stats: each holder "
            "scales with its own statistics (federated statistics need privacy=none or "
            "he with a BFV preset, and no DP); the final model needs that scaling too"
        )
    if cfg.federation.name != "simulation":
        return  # each SuperNode checks its own data when it builds the model (and DP-SGD
        # its state before its first step)
    data = data_spec(cfg.task, cfg.partition)
    if cfg.partition.name == "natural":  # one partition per site: as many as SuperNodes?
        spec = PartitionSpec.from_config(cfg.partition, cfg.federation.num_supernodes)
        pool_partitions(data, cfg.task.server_test_fraction, spec, cfg.seed)
    test = sample_rows(data, cfg.task.server_test_fraction, cfg.seed)
    check_fits(net, test, dry_run=True)
    if record_dp:
        refuse_untrained_state(net, test.take(slice(0, 8)).x)


def centralized_evaluation(cfg: AppConfig, net: keras.Model, statistics: ServerStatistics | None):
    """An `evaluate_fn` on the server's held-out test set (plaintext aggregates only),
    scaled with the federated `statistics` once they are summed (before: no evaluation)."""
    spec = data_spec(cfg.task, cfg.partition, federated=statistics is not None)
    test = load_server_test(spec, cfg.task.server_test_fraction, cfg.seed)

    def evaluate_fn(
        server_round: int, weights: NDArrays, config: dict[str, Scalar]
    ) -> tuple[float, dict[str, Scalar]] | None:
        data = test
        if statistics is not None:
            if (values := statistics.values()) is None:
                return None  # round 0: the statistics are summed with round 1's query
            data = Split(*standardise(test.x, stats=global_statistics(values, test.x)), test.y)
        net.set_weights(weights)
        results = evaluate(net, data, batch_size=cfg.train.batch_size)
        return results.pop("loss"), results

    return evaluate_fn
