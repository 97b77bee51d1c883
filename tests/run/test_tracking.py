"""TensorBoard event files and MLflow runs, written for real and read back."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from events import read_events

from fl_app.config import ConfigError, compose_config
from fl_app.run import tracking
from fl_app.run.tracking import MLflowSink, TensorBoardSink, tensorboard_tag, trackers_for

ROUNDS = {
    1: {"fit_clients": 3, "train_accuracy": 0.4, "eval_accuracy": 0.49, "bytes_up": 900_000,
        "round_seconds": 9.5, "aggregated": True, "dp_holder_epsilon": {"1": 2.0}},
    2: {"fit_clients": 3, "train_accuracy": 0.64, "eval_accuracy": 0.82, "bytes_up": 900_100,
        "round_seconds": 2.0, "aggregated": True, "dp_epsilon_max": 3.5},
}  # fmt: skip


def test_tensorboard_events_hold_every_rounds_scalars(tmp_path):
    sink = TensorBoardSink(tmp_path)
    for rnd, values in ROUNDS.items():
        sink(rnd, values)
    sink.finish({}, tmp_path)
    events = read_events(tmp_path / "tensorboard")
    assert events["eval/accuracy"] == pytest.approx({1: 0.49, 2: 0.82})
    assert events["train/accuracy"] == pytest.approx({1: 0.4, 2: 0.64})
    assert events["bytes/bytes_up"] == {1: 900_000.0, 2: 900_100.0}
    assert events["time/round_seconds"] == pytest.approx({1: 9.5, 2: 2.0})
    assert events["dp/epsilon_max"] == {2: 3.5}
    assert events["clients/aggregated"] == {1: 1.0, 2: 1.0}
    assert not any("holder" in tag for tag in events)  # per-holder maps are not scalars


def test_tags_are_grouped_as_tensorboard_shows_them():
    assert [tensorboard_tag(k) for k in ("eval_loss", "wire_bytes_down", "crypto_seconds")] == [
        "eval/loss",
        "bytes/wire_bytes_down",
        "time/crypto_seconds",
    ]


def run_dir_with_secrets(root: Path) -> Path:
    """A finished HE run's directory: its reports, plus keys and an encrypted checkpoint."""
    run = root / "run"
    (run / "keys").mkdir(parents=True)
    for name in tracking.ARTIFACTS:
        (run / name).write_text("{}" if name.endswith(".json") else "x")
    (run / "checkpoint.npz").write_bytes(b"ciphertexts")
    (run / "keys" / "secret.ctx").write_bytes(b"secret key")
    (run / "keys" / "public.ctx").write_bytes(b"public key")
    return run


needs_mlflow = pytest.mark.skipif(
    importlib.util.find_spec("mlflow") is None, reason="the [tracking] extra is not installed"
)


@needs_mlflow
def test_an_mlflow_run_has_the_config_the_metrics_and_no_secret(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory
    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    cfg = compose_config(["tracking=mlflow", f"tracking.uri={uri}", "tracking.experiment=sweep1"])
    run_dir = run_dir_with_secrets(tmp_path)
    sink = MLflowSink(cfg, run_dir, run_id=7)
    for rnd, values in ROUNDS.items():
        sink(rnd, values)
    sink.finish({"rounds_completed": 2, "final_model": None}, run_dir)

    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(sink.run_id)
    assert client.get_experiment(run.info.experiment_id).name == "sweep1"
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["task.name"] == "digits" and params["privacy.name"] == "he"
    assert params["he.preset"] == "seeded" and params["seed"] == "42"
    history = client.get_metric_history(sink.run_id, "eval_accuracy")
    assert [(m.step, m.value) for m in history] == [(1, 0.49), (2, 0.82)]
    artifacts = {a.path for a in client.list_artifacts(sink.run_id)}
    assert artifacts == set(tracking.ARTIFACTS)
    stored = [p for p in (store / "mlartifacts").rglob("*") if p.is_file()]
    assert {p.name for p in stored} == set(tracking.ARTIFACTS)  # beside the database
    assert not [p for p in stored if p.suffix in (".ctx", ".npz")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "store"]
    assert json.loads((run_dir / "summary.json").read_text()) == {}


@needs_mlflow
def test_the_final_model_is_an_artifact_only_when_plaintext(tmp_path, monkeypatch):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_config(["privacy=none", "tracking=mlflow", f"tracking.uri={uri}"])
    run_dir = run_dir_with_secrets(tmp_path)
    (run_dir / "model.keras").write_bytes(b"a keras zip")
    sink = MLflowSink(cfg, run_dir, run_id=8)
    sink.finish({"rounds_completed": 1, "final_model": str(run_dir / "model.keras")}, run_dir)
    names = {a.path for a in mlflow.MlflowClient(uri).list_artifacts(sink.run_id)}
    assert "model.keras" in names and not {n for n in names if n.endswith(".ctx")}


def test_tracking_mlflow_without_mlflow_fails_before_training(tmp_path, monkeypatch):
    cfg = compose_config(["tracking=mlflow", "tracking.tensorboard=false"])
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"tracking=mlflow .*pip install -e '\.\[tracking\]'"):
        trackers_for(cfg, tmp_path, 1)


@needs_mlflow
def test_an_unusable_tracking_uri_is_named(tmp_path):
    cfg = compose_config(["tracking=mlflow", "tracking.uri=nosuchscheme://x"])
    with pytest.raises(ConfigError, match=r"tracking.uri='nosuchscheme://x' is invalid"):
        MLflowSink(cfg, tmp_path, 1)


def test_the_default_store_is_sqlite_under_output_root(tmp_path):
    cfg = compose_config(["tracking=mlflow", f"output_root={tmp_path}"])
    assert tracking.store_of(cfg) == (f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "mlartifacts")


@needs_mlflow
def test_a_run_that_fails_is_a_failed_mlflow_run_and_leaves_no_event_files(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_config(["tracking=mlflow", f"tracking.uri={uri}"])
    run_dir = tmp_path / "run"
    sinks = trackers_for(cfg, run_dir, 9)  # before any check of the run: nothing written yet
    assert not run_dir.exists()
    for sink in sinks:
        sink.abort()  # e.g. the model was refused before round 1
    assert not run_dir.exists()
    (mlflow_sink,) = [s for s in sinks if isinstance(s, MLflowSink)]
    assert mlflow.MlflowClient(uri).get_run(mlflow_sink.run_id).info.status == "FAILED"
