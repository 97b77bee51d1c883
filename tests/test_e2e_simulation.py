"""End to end through `flwr run .` on a real local simulation SuperLink (slow)."""

from __future__ import annotations

import json
import re
import time

import pytest
from flower_local import LocalSuperLink

pytestmark = pytest.mark.slow

FEDERATION = "num-supernodes=3 client-resources-num-cpus=1"
BASE = "federation.num_supernodes=3 task=breast_cancer"


@pytest.fixture(scope="module")
def superlink(tmp_path_factory):
    link = LocalSuperLink(tmp_path_factory.mktemp("flwr_home"))
    link.start()
    yield link
    link.stop()


def flwr_run(link: LocalSuperLink, run_config: str) -> tuple[int, str]:
    """Submit a run like the README does, wait for it, return (run id, final status)."""
    result = link.flwr(
        "run", ".", "--stream", "--federation-config", FEDERATION, "--run-config", run_config
    )
    match = re.search(r"run (\d+)", result.stdout + result.stderr, re.IGNORECASE)
    assert match, result.stdout + result.stderr
    run_id = int(match.group(1))
    deadline = time.monotonic() + 300
    while not (status := link.run_status(run_id)).startswith("finished"):
        assert time.monotonic() < deadline, f"run {run_id} still {status}"
        time.sleep(2)
    return run_id, status


@pytest.fixture(scope="module")
def two_round_run(superlink, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    run_id, status = flwr_run(
        superlink, f"num-server-rounds=2 output-dir='{out}' overrides='{BASE}'"
    )
    return out, run_id, status


def test_run_completes_and_writes_every_artifact(two_round_run):
    out, run_id, status = two_round_run
    assert status == "finished:completed"
    for name in ("config.yaml", "metrics.csv", "metrics.json", "metrics.png", "model.keras"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run_id"] == run_id
    assert summary["strategy"] == "fedavg"
    assert summary["rounds_completed"] == 2
    assert 0.5 < summary["final_accuracy"] <= 1.0
    assert summary["final_loss"] > 0
    assert summary["bytes_up_total"] > 0
    assert summary["bytes_down_total"] > summary["bytes_up_total"]  # fit + eval go down
    assert summary["wall_seconds"] > 0
    rows = json.loads((out / "metrics.json").read_text())
    assert [row["round"] for row in rows] == [0, 1, 2]
    assert all(row["fit_clients"] == 3 for row in rows[1:])


def test_final_model_is_a_normal_keras_model(two_round_run):
    import keras

    out, _, _ = two_round_run
    net = keras.saving.load_model(out / "model.keras")
    assert net.output_shape == (None, 2)


def test_resume_continues_from_the_checkpoint(superlink, two_round_run):
    out, _, _ = two_round_run
    before = json.loads((out / "metrics.json").read_text())
    _, status = flwr_run(
        superlink, f"num-server-rounds=3 output-dir='{out}' overrides='{BASE} resume=true'"
    )
    assert status == "finished:completed"
    after = json.loads((out / "metrics.json").read_text())
    assert [row["round"] for row in after] == [0, 1, 2, 3]
    for old, new in zip(before[1:], after[1:3], strict=True):
        assert new["eval_accuracy"] == old["eval_accuracy"]  # completed rounds kept
    assert json.loads((out / "summary.json").read_text())["rounds_completed"] == 3


def test_invalid_config_fails_the_run_before_training(superlink, tmp_path):
    out = tmp_path / "bad"
    _, status = flwr_run(
        superlink,
        f"output-dir='{out}' overrides='{BASE} partition=dirichlet partition.alpha=-1'",
    )
    assert status == "finished:failed"
    assert not (out / "metrics.csv").exists()
