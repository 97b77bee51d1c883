"""Where a run is watched besides its files: TensorBoard event files, and MLflow.

Both take a round's new numbers (`RunReport` sinks) and, at the end, the run's summary.
TensorBoard: TensorFlow's own summary writer, into `<run dir>/tensorboard`, so
`tensorboard --logdir <sweep dir>` shows a sweep's jobs side by side. MLflow (optional,
`pip install -e '.[tracking]'`): one MLflow run per fl_app run, with the resolved config
as parameters and an explicit list of the run's files as artifacts: never keys,
contexts or checkpoints (under HE these hold ciphertexts).
"""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path
from typing import Any

from fl_app.config import ConfigError
from fl_app.config.schema import AppConfig, plain

logger = logging.getLogger(__name__)

TENSORBOARD_DIR = "tensorboard"
# The run's files an MLflow run gets (checkpoint.npz and keys/ never: ciphertexts, keys).
ARTIFACTS = ("config.yaml", "summary.json", "metrics.csv", "metrics.json", "metrics.png")
MODEL_ARTIFACT = "model.keras"  # only written by plaintext runs
GROUPS = ("train", "eval", "centralized", "dp")


def scalars(values: dict[str, Any]) -> dict[str, float]:
    """The numbers of a round record (booleans as 0/1; maps and text left out)."""
    return {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, int | float) and v == v  # not NaN
    }


def tensorboard_tag(key: str) -> str:
    """A record key as a TensorBoard tag, grouped: eval/accuracy, bytes/wire_bytes_up."""
    head, _, rest = key.partition("_")
    if head in GROUPS and rest:
        return f"{head}/{rest}"
    if "bytes" in key:
        return f"bytes/{key}"
    if key.endswith("_seconds"):
        return f"time/{key}"
    return f"clients/{key}"


class TensorBoardSink:
    """Per-round scalars as event files in `<run dir>/tensorboard` (step = round).

    Written with TensorFlow's own writer and `tf.summary.write`, marked as the scalars
    plug-in's data as `tf.summary.scalar` would (which needs the tensorboard package).
    """

    def __init__(self, run_dir: Path) -> None:
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        self.directory = run_dir / TENSORBOARD_DIR
        self._tf = tf
        self._writer: Any = None  # created with the first round: nothing written before
        self._metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
            data_class=summary_pb2.DATA_CLASS_SCALAR,
        )

    def __call__(self, rnd: int, values: dict[str, Any]) -> None:
        tf = self._tf
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.directory))
        with self._writer.as_default(step=rnd):
            for key, value in scalars(values).items():
                tensor = tf.constant(value, tf.float32)
                tf.summary.write(tensorboard_tag(key), tensor, metadata=self._metadata)
        self._writer.flush()

    def finish(self, summary: dict[str, Any], run_dir: Path) -> None:
        self.abort()

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()


def flat_params(cfg: AppConfig) -> dict[str, str]:
    """The resolved config as MLflow parameters: dotted keys, values as text."""
    flat: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = str(node)

    walk(plain(cfg), "")
    return flat


def store_of(cfg: AppConfig) -> tuple[str, Path | None]:
    """The tracking URI, and where a new experiment's artifacts go: beside a SQLite
    database (MLflow's embedded store, no server; by default <output_root>/mlflow.db),
    else where the tracking server says (None)."""
    uri = cfg.tracking.uri or f"sqlite:///{Path(cfg.output_root).expanduser().resolve()}/mlflow.db"
    if uri.startswith("sqlite:///"):
        return uri, Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts"
    return uri, None


class MLflowSink:
    """One MLflow run for this fl_app run; a failing tracker warns, never stops training."""

    def __init__(self, cfg: AppConfig, run_dir: Path, run_id: int) -> None:
        import mlflow

        uri, artifacts = store_of(cfg)
        self.uri, self.experiment = uri, cfg.tracking.experiment or "fl_app"
        try:
            self.client = mlflow.MlflowClient(tracking_uri=uri)
            experiment = self.client.get_experiment_by_name(self.experiment)
            if experiment is None:
                location = (artifacts / self.experiment).as_uri() if artifacts else None
                experiment_id = self.client.create_experiment(self.experiment, location)
            else:
                experiment_id = experiment.experiment_id
            tags = {"fl_app.run_dir": str(run_dir), "fl_app.flower_run_id": str(run_id)}
            name = cfg.tracking.run_name or run_dir.name
            run = self.client.create_run(experiment_id, run_name=name, tags=tags)
        except mlflow.exceptions.MlflowException as err:
            raise ConfigError(f"tracking.uri={uri!r} is invalid: MLflow says {err}") from err
        self.run_id = run.info.run_id
        params = [mlflow.entities.Param(k, v[:6000]) for k, v in flat_params(cfg).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 per call
            self._safely(self.client.log_batch, self.run_id, params=params[start : start + 100])

    def __call__(self, rnd: int, values: dict[str, Any]) -> None:
        import mlflow

        metrics = [mlflow.entities.Metric(k, v, _now(), rnd) for k, v in scalars(values).items()]
        self._safely(self.client.log_batch, self.run_id, metrics=metrics)

    def finish(self, summary: dict[str, Any], run_dir: Path) -> None:
        names = [*ARTIFACTS, MODEL_ARTIFACT] if summary.get("final_model") else ARTIFACTS
        for name in names:
            if (run_dir / name).is_file():
                self._safely(self.client.log_artifact, self.run_id, str(run_dir / name))
        status = "FINISHED" if summary.get("rounds_completed") else "FAILED"
        self._safely(self.client.set_terminated, self.run_id, status)
        logger.info("  mlflow     run %s in experiment '%s' at %s", self.run_id,
                    self.experiment, self.uri)  # fmt: skip

    def abort(self) -> None:
        """The fl_app run failed before its summary (a refused model, an exception)."""
        self._safely(self.client.set_terminated, self.run_id, "FAILED")

    def _safely(self, call: Any, *args: Any, **kwargs: Any) -> None:
        try:
            call(*args, **kwargs)
        except Exception as err:  # tracking must never end a training run
            logger.warning("MLflow %s failed, the run goes on: %s", call.__name__, err)


def _now() -> int:
    return int(time.time() * 1000)


def trackers_for(cfg: AppConfig, run_dir: Path, run_id: int) -> list[Any]:
    """The sinks a run's config asks for; a missing MLflow fails before training."""
    sinks: list[Any] = []
    if cfg.tracking.tensorboard:
        sinks.append(TensorBoardSink(run_dir))
    if cfg.tracking.name == "mlflow":
        if importlib.util.find_spec("mlflow") is None:
            raise ConfigError(
                "tracking=mlflow is invalid here: MLflow is not installed on the server; "
                "install the extra (pip install -e '.[tracking]') or use tracking=none"
            )
        sinks.append(MLflowSink(cfg, run_dir, run_id))
    return sinks
