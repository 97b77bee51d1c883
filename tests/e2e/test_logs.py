"""What a user sees: a real simulation's log, its TensorBoard events, its MLflow run (slow)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from events import read_events

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


def test_the_default_log_has_one_line_per_round_and_no_framework_chatter(superlink, tmp_path):
    out = tmp_path / "he"
    output = run(superlink, out, "he", 2)
    assert not [line for line in output.splitlines() if is_chatter(line)]
    assert "Tip: In future versions of Ray" not in output
    assert not [stage for stage in FLOWER_STAGES if stage in output]
    lines = re.findall(r"round (\d)/2 · 3/3 clients · train accuracy .* · (\d+\.\d) s", output)
    assert [rnd for rnd, _ in lines] == ["1", "2"]
    accuracy = rows(out)[2]["eval_accuracy"]
    assert f"eval accuracy {accuracy:.3f} · up " in output
    assert "Run finished: 2 of 2 round(s) aggregated" in output
    secret, checkpoint = out / "keys" / "secret.ctx", out / "checkpoint.npz"
    assert f"fl-app decrypt --secret {secret} --checkpoint {checkpoint} --out model.keras" in output

    events = read_events(out / "tensorboard")
    for key, tag in (("eval_accuracy", "eval/accuracy"), ("bytes_up", "bytes/bytes_up")):
        assert events[tag] == pytest.approx({r: rows(out)[r][key] for r in (1, 2)}, rel=1e-6)


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
