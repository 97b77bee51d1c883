"""A user's own app outside this repository (`fl-app new`), trained for real (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fl_app.ops.local_superlink import LocalSuperLink

pytestmark = pytest.mark.slow

FL_APP = str(Path(sys.executable).parent / "fl-app")


def test_a_scaffolded_app_trains_its_parquet_task_under_he_and_decrypts(tmp_path):
    import keras
    import pandas as pd

    app = tmp_path / "hospital"
    made = subprocess.run([FL_APP, "new", str(app), "--name", "mine"], capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert made.returncode == 0, made.stderr
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(rng.normal(size=(300, 5)), columns=["age", "bmi", "bp", "hr", "other"])
    frame["outcome"] = (frame["age"] - frame["bmi"] > 0).astype("int64")
    frame.to_parquet(tmp_path / "patients.parquet")
    task_yaml = app / "conf" / "task" / "mine.yaml"
    task_yaml.write_text(
        task_yaml.read_text()
        .replace("source: mine_task.load", "source: fl_app.ml.sources.table")
        .replace(
            "preprocess: standardize",
            f"source_args: {{path: {tmp_path / 'patients.parquet'}, target: outcome, "
            "features: [age, bmi, bp, hr]}\npreprocess: standardize",
        )
    )
    out = tmp_path / "out"
    with LocalSuperLink(tmp_path / "flwr_home") as link:
        result = link.submit(
            f"num-server-rounds=2 output-dir='{out}' "
            "overrides='task=mine federation.num_supernodes=3'",
            "num-supernodes=3 client-resources-num-cpus=1",
            app_dir=app,
        )
    assert result.status == "finished:completed", result.output[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "mine" and summary["encrypted"] is True
    assert summary["primary_metric"] == "auc" and summary["final_metric"] > 0.8

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
        from mine_task import build
    finally:
        sys.path.remove(str(app))
    assert net.predict(np.zeros((2, 4), np.float32), verbose=0).shape == (2, 1)
    # BatchNormalization's moving statistics were federated: they left their initial values
    initial = {w.path: np.asarray(w) for w in build().weights}
    trained = {w.path.split("/", 1)[-1]: np.asarray(w) for w in net.weights}
    moving = [p for p in initial if "moving" in p]
    assert len(moving) == 2
    for path in moving:
        assert not np.allclose(trained[path.split("/", 1)[-1]], initial[path])
