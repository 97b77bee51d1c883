"""What a user sees at log_level=debug: the frameworks' chatter, and an MLflow run (slow).
The default log and its TensorBoard events: tests/e2e/test_simulation.py (the HE run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fl_app.ops.local_superlink import LocalSuperLink
from fl_app.quiet import is_chatter

pytestmark = pytest.mark.slow

FEDERATION = "num-supernodes=3 client-resources-num-cpus=1"
FLOWER_STAGES = ("[ROUND 1]", "configure_fit:", "aggregate_evaluate:", "History (loss")


def run(link: LocalSuperLink, out: Path, privacy: str, rounds: int, extra: str = "") -> str:
    result = link.submit(
        f"privacy='{privacy}' num-server-rounds={rounds} output-dir='{out}' "
        f"overrides='federation.num_supernodes=3 {extra}'",
        FEDERATION,
    )
    assert result.status == "finished:completed", result.output[-3000:]
    return result.output


def rows(out: Path) -> dict[int, dict]:
    return {row["round"]: row for row in json.loads((out / "metrics.json").read_text())}


def test_debug_brings_the_chatter_back_and_mlflow_logs_the_run(superlink, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    out, uri = tmp_path / "fedavg", f"sqlite:///{tmp_path / 'mlflow.db'}"
    output = run(superlink, out, "none", 1, f"log_level=debug tracking=mlflow tracking.uri={uri}")
    assert [line for line in output.splitlines() if is_chatter(line)]
    assert all(stage in output for stage in FLOWER_STAGES)
    assert "round 1 record: {'round': 1" in output  # the full record, at DEBUG

    client = mlflow.MlflowClient(tracking_uri=uri)
    (found,) = client.search_runs([client.get_experiment_by_name("fl_app").experiment_id])
    assert found.info.status == "FINISHED"
    assert found.data.params["privacy.name"] == "none"
    assert found.data.params["log_level"] == "debug"
    history = client.get_metric_history(found.info.run_id, "eval_accuracy")
    assert [(m.step, m.value) for m in history] == [
        (1, pytest.approx(rows(out)[1]["eval_accuracy"]))
    ]
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"summary.json", "metrics.csv", "metrics.png", "config.yaml", "model.keras"} <= artifacts
    assert not [name for name in artifacts if name.endswith((".ctx", ".npz"))]
