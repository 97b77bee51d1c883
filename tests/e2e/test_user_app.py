"""A user's own app outside this repository (`fl-app new`), trained for real (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fl_app.ops.local_superlink import LocalSuperLink

pytestmark = pytest.mark.slow

FL_APP = str(Path(sys.executable).parent / "fl-app")


WARDS_TASK = textwrap.dedent(
    '''
    """Named inputs: vital signs (floats), a ward id (an integer into an Embedding) and a
    short note (text, vectorised by the model with a given vocabulary)."""
    import keras


    def build(wards=12, width=8):
        vitals = keras.Input((3,), name="vitals")
        ward = keras.Input((), dtype="int32", name="ward")
        note = keras.Input((), dtype="string", name="note")  # text, encoded in the model
        words = keras.layers.TextVectorization(
            vocabulary=["stable", "fever", "pain", "rest"], output_mode="multi_hot")(note)
        x = keras.layers.Concatenate()(
            [vitals, keras.layers.Embedding(wards, 4)(ward), words])
        x = keras.layers.BatchNormalization()(keras.layers.Dense(width, activation="relu")(x))
        out = keras.layers.Dense(1, activation="sigmoid")(x)
        return keras.Model({"vitals": vitals, "ward": ward, "note": note}, out)
    '''
)
WARDS_YAML = """\
name: wards
model: wards_task.build
model_args: {{wards: 12}}
source: fl_app.ml.sources.table
source_args:
  path: {path}
  target: outcome
  inputs: {{vitals: [age, bp, hr], ward: ward_id, note: note}}
preprocess: standardize
objective:
  type: classification
  loss: binary_crossentropy
  metrics: [accuracy, auc]
  primary: auc
"""


def raw_test_splits(app: Path, overrides: list[str], nodes: int) -> list:
    """The simulated holders' test splits, unscaled (as fl_app loads them for federated
    statistics), composed from `app` like its run."""
    from fl_app.config.task import data_spec
    from fl_app.ml.data import PartitionSpec, load_client_data
    from fl_app.ops.apps import compose_for_app

    cfg = compose_for_app(overrides, app)
    data = data_spec(cfg.task, cfg.partition, federated=True)
    spec = PartitionSpec.from_config(cfg.partition, nodes)
    return [
        load_client_data(data, spec, pid, server_test_fraction=cfg.task.server_test_fraction,
                         client_test_fraction=cfg.task.client_test_fraction, seed=cfg.seed).test
        for pid in range(nodes)
    ]  # fmt: skip


def new_app(path: Path) -> Path:
    """`fl-app new <path> --name mine`, checked."""
    made = subprocess.run([FL_APP, "new", str(path), "--name", "mine"], capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert made.returncode == 0, made.stderr
    return path


def train_app(app: Path, home: Path, run_config: str, nodes: int):
    """`flwr run` of `app` on a fresh local simulation SuperLink; its RunResult."""
    with LocalSuperLink(home) as link:
        return link.submit(
            run_config, f"num-supernodes={nodes} client-resources-num-cpus=1", app_dir=app
        )


def test_a_scaffolded_app_trains_a_named_input_parquet_task_under_he_and_decrypts(tmp_path):
    """The issue's user: `fl-app new`, their own module and YAML, a Parquet file; HE."""
    import keras
    import pandas as pd

    app = new_app(tmp_path / "hospital")
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(rng.normal(50, 10, size=(360, 3)), columns=["age", "bp", "hr"])
    frame["ward_id"] = rng.integers(0, 12, size=360)
    frame["outcome"] = ((frame["ward_id"] < 6) ^ (frame["age"] > 50)).astype("int64")
    frame["site_code"] = rng.choice(["H1", "H2", "H3"], size=360, p=[0.2, 0.3, 0.5])
    # a note that says something about the outcome (the model reads it as text)
    frame["note"] = np.where(frame["outcome"] == 1, "fever pain", "stable rest")
    frame.to_parquet(tmp_path / "patients.parquet")
    (app / "wards_task.py").write_text(WARDS_TASK)
    (app / "conf" / "task" / "wards.yaml").write_text(
        WARDS_YAML.format(path=tmp_path / "patients.parquet")
    )
    out = tmp_path / "out"
    result = train_app(
        app,
        tmp_path / "flwr_home",
        f"num-server-rounds=2 output-dir='{out}' "
        "overrides='task=wards federation.num_supernodes=3 train.learning_rate=0.02 "
        "partition=natural partition.by=site_code'",
        3,
    )  # fmt: skip  (one client per hospital: three sites, three SuperNodes)
    assert result.status == "finished:completed", result.output[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "wards" and summary["encrypted"] is True
    assert summary["rounds_completed"] == 2 and summary["primary_metric"] == "auc"
    assert summary["final_metric"] > 0.6, summary
    assert summary["partition"] == "natural" and summary["final_metric_combined"] == "pooled"

    model_path = tmp_path / "model.keras"
    decrypted = subprocess.run(
        [FL_APP, "decrypt", "--secret", str(out / "keys" / "secret.ctx"), "--checkpoint",
         str(out / "checkpoint.npz"), "--out", str(model_path), "--app", str(app)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert decrypted.returncode == 0, decrypted.stderr[-2000:]
    sys.path.insert(0, str(app))
    try:
        net = keras.saving.load_model(model_path)
        from wards_task import build
    finally:
        sys.path.remove(str(app))
    examples = {"vitals": np.zeros((2, 3), np.float32), "ward": np.array([1, 7]),
                "note": np.array(["fever", "rest"], dtype=object)}  # fmt: skip
    assert net.predict(examples, verbose=0).shape == (2, 1)
    # The holders standardised with federated statistics (summed encrypted before round
    # 1): the decrypted model takes raw inputs, and on the clients' raw test rows it
    # scores the AUC of the last federated evaluation.
    assert "behind the federated statistics of 3 holders" in decrypted.stdout
    tests = raw_test_splits(app, ["task=wards", "partition=natural", "partition.by=site_code"], 3)
    raw_x = {k: np.concatenate([t.x[k] for t in tests]) for k in tests[0].x}
    auc = keras.metrics.AUC()
    auc.update_state(np.concatenate([t.y for t in tests]), net.predict(raw_x, verbose=0))
    assert float(auc.result()) == pytest.approx(summary["final_metric"], abs=1e-6)
    # BatchNormalization's moving statistics were federated: they left their initial values
    initial = {w.path.split("/", 1)[-1]: np.asarray(w) for w in build().weights}
    trained = {w.path.split("/", 1)[-1]: np.asarray(w) for w in net.weights}
    moving = [p for p in initial if "moving" in p]
    assert len(moving) == 2
    for path in moving:
        assert not np.allclose(trained[path], initial[path])


# A custom layer's BatchNormalization under record-level DP is refused before round 1:
# tests/test_record_dp.py (in process; a user app's module path changes nothing there).


def test_a_user_app_deploys_its_task_module_to_real_supernodes(tmp_path, monkeypatch):
    """The user's own per-site Parquet files (`fl-app export-partitions` writes them here;
    every row accounted for) behind `federation up --data`, then `flwr run .`: the FAB
    carries the task module to two TLS, node-authenticated SuperNodes holding the files,
    which standardise with federated statistics summed encrypted."""
    from fl_app.config.task import data_spec
    from fl_app.ops import local_deployment as deploy
    from fl_app.ops.apps import compose_for_app
    from fl_app.ops.flower import FlowerCLI

    app = new_app(tmp_path / "clinic")
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr_home"))
    monkeypatch.setattr(sys, "path", list(sys.path))  # compose_for_app adds the app
    out = tmp_path / "out"
    sites = tmp_path / "sites"
    exported = subprocess.run(
        [FL_APP, "export-partitions", "--task", "mine", "--num-partitions", "2", "--format",
         "parquet", "--out", str(sites), "--app", str(app), "task.server_test_fraction=0.1"],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert "held out for the server's test set" in exported.stdout, exported.stdout
    files = sorted(sites.glob("*.parquet"))
    try:
        info = deploy.up(
            tmp_path / "fed", num_nodes=2, task="mine", files=files,
            data=data_spec(compose_for_app(["task=mine"], app).task),
        )  # fmt: skip
        assert list(info["data"]) == [str(f) for f in files]
        overrides = (
            "federation=deployment federation.num_supernodes=2 task=mine "
            f"he.public_context={info['public_context']}"
        )
        result = FlowerCLI(dict(os.environ), deploy.CONNECTION, app_dir=app).submit(
            f"num-server-rounds=1 output-dir='{out}' overrides='{overrides}'", timeout=600
        )
    finally:
        deploy.down(tmp_path / "fed")
    assert result.status == "finished:completed", result.output[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "mine" and summary["encrypted"] is True
    assert summary["rounds_completed"] == 1 and summary["primary_metric"] == "auc"
    assert not (out / "keys").exists()  # the server never had the secret context
    assert summary["statistics"] == {"source": "federated", "holders": 2, "encrypted": True}
