"""End to end through `flwr run .` on a real local simulation SuperLink (slow)."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from events import read_events
from runs import flwr_run

from fl_app.ops.local_superlink import LocalSuperLink
from fl_app.ops.procs import pids_below
from fl_app.privacy.dp import RoundRelease, epsilon
from fl_app.quiet import is_chatter
from fl_app.run.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

BASE = "federation.num_supernodes=3"
FLOWER_STAGES = ("[ROUND 1]", "configure_fit:", "aggregate_evaluate:", "History (loss")
FL_APP = str(Path(sys.executable).parent / "fl-app")


def run_to(link, out: Path, privacy: str, rounds: int, extra: str = ""):
    return flwr_run(
        link,
        f"privacy='{privacy}' num-server-rounds={rounds} output-dir='{out}' "
        f"overrides='{BASE} {extra}'",
    )


@pytest.fixture(scope="module")
def fedavg_run(superlink, tmp_path_factory):
    out = tmp_path_factory.mktemp("fedavg") / "out"
    run_id, status, _ = run_to(superlink, out, "none", 2)
    return out, run_id, status


@pytest.fixture(scope="module")
def he_run(superlink, tmp_path_factory):
    out = tmp_path_factory.mktemp("he") / "out"
    # the plaintext run's partitions (under HE nothing is held out for the server by
    # default): the two runs are compared round by round
    run_id, status, output = run_to(superlink, out, "he", 2, "task.server_test_fraction=0.2")
    return out, run_id, status, output


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_fedavg_run_completes_and_writes_every_artifact(fedavg_run):
    out, run_id, status = fedavg_run
    assert status == "finished:completed"
    for name in ("config.yaml", "metrics.csv", "metrics.json", "metrics.png", "model.keras"):
        assert (out / name).stat().st_size > 0, name
    facts = summary(out)
    assert facts["run_id"] == run_id
    assert (facts["privacy"], facts["strategy"]) == ("none", "fedavg")
    assert facts["rounds_completed"] == 2
    assert 0.5 < facts["final_accuracy"] <= 1.0
    assert facts["final_loss"] > 0
    assert facts["bytes_up_total"] > 0
    assert facts["bytes_down_total"] > facts["bytes_up_total"]  # fit + eval go down
    assert facts["wall_seconds"] > 0
    rows = json.loads((out / "metrics.json").read_text())
    assert [row["round"] for row in rows] == [0, 1, 2]
    assert all(row["fit_clients"] == 3 for row in rows[1:])
    # On the wire a client sends its update plus a few metrics.
    wire = rows[2]["wire_bytes_up"] / rows[2]["fit_sampled"]
    assert 1.0 < wire / (rows[2]["bytes_up"] / rows[2]["fit_clients"]) < 1.05


def test_evaluating_with_fit_gives_every_rounds_accuracy_in_one_message_per_round(
    superlink, fedavg_run, tmp_path
):
    """The default (strategy.evaluate_with_fit=null: on, as fit and evaluation sample
    alike) against separate evaluate messages in every round."""
    out = tmp_path / "separate"
    _, status, _ = run_to(superlink, out, "none", 2, "strategy.evaluate_with_fit=false")
    assert status == "finished:completed"
    separate = {row["round"]: row for row in json.loads((out / "metrics.json").read_text())}
    rows = {row["round"]: row for row in json.loads((fedavg_run[0] / "metrics.json").read_text())}
    for rnd in (1, 2):  # round 1's evaluation came with round 2's fit; round 2's separately
        assert rows[rnd]["eval_clients"] == 3
        assert rows[rnd]["eval_accuracy"] == pytest.approx(separate[rnd]["eval_accuracy"])
        assert rows[rnd]["eval_loss"] == pytest.approx(separate[rnd]["eval_loss"], rel=1e-5)
    # one evaluate round trip fewer: round 1 sent the model once per client, not twice
    assert rows[1]["bytes_down"] == pytest.approx(separate[1]["bytes_down"] / 2, rel=0.01)


@pytest.mark.parametrize("privacy", ["secagg"])  # under HE: the resumed run's test below
def test_record_level_dp_reports_every_holders_epsilon(superlink, tmp_path, privacy):
    out = tmp_path / "record_dp"
    extra = "dp.enabled=true dp.level=record dp.target_epsilon=8"
    _, status, output = run_to(superlink, out, privacy, 2, extra)
    assert status == "finished:completed", output[-3000:]
    dp = summary(out)["dp"]
    assert dp["level"] == "record" and dp["unit"].startswith("adding or removing one record")
    assert len(dp["per_holder_epsilon"]) == 3  # the three holders, by their ledgers' ids
    assert all(0 < eps <= 8.0 for eps in dp["per_holder_epsilon"].values())
    assert dp["epsilon"] == pytest.approx(8.0, rel=0.01)  # calibrated for the 2 rounds
    assert [r["round"] for r in dp["per_round"]] == [1, 2]
    assert summary(out)["encrypted"] is (privacy == "he")
    assert "round 2/2 · 3/3 clients · " in output and " · ε " in output  # the round lines
    assert "  privacy    ε 8" in output  # the end-of-run block


def accountants_epsilons(run_dir: Path, delta: float = 1e-5) -> dict[str, float]:
    """Each simulated holder's ε from its ledger file, by dp_accounting called directly."""
    import dp_accounting
    from dp_accounting.rdp import rdp_privacy_accountant

    from fl_app.privacy.record_level import ORDERS

    spent = {}
    for path in (run_dir / "dp_ledgers").glob("dp-ledger-*.json"):
        ledger = json.loads(path.read_text())
        accountant = rdp_privacy_accountant.RdpAccountant(ORDERS)
        for b in ledger["bookings"]:
            noise = dp_accounting.GaussianDpEvent(b["noise_multiplier"])
            accountant.compose(
                dp_accounting.PoissonSampledDpEvent(b["sampling_rate"], noise), b["steps"]
            )
        spent[ledger["holder"]] = accountant.get_epsilon(delta)
    return spent


def files_of(run_dir: Path) -> dict[str, tuple[int, int]]:
    """Every file under `run_dir` with its size and modification time."""
    return {
        str(p.relative_to(run_dir)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in run_dir.rglob("*")
        if p.is_file()
    }


RECORD_DP = (
    "task=breast_cancer dp.enabled=true dp.level=record dp.noise_multiplier=1.5 "
    "train.optimizer=sgd train.learning_rate=0.5 train.batch_size=32"
)


def test_a_resumed_record_dp_run_reports_the_epsilon_of_every_round_once_per_holder(
    superlink, tmp_path
):
    """Issue 21: the ledger forgot a resume (ε restarted at 0, holders listed twice), and
    a resume with other privacy or model settings was accepted."""
    out = tmp_path / "record_resumed"
    _, status, output = run_to(superlink, out, "he", 2, RECORD_DP)
    assert status == "finished:completed", output[-3000:]
    two = summary(out)["dp"]
    ledgers = sorted((out / "dp_ledgers").iterdir())
    assert len(ledgers) == 3 and all(stat_mode(p) == 0o600 for p in ledgers)

    before = files_of(out)
    # (each key resume refuses is unit-tested in tests/test_run_state.py; here one end to
    # end, of privacy: a refused resume books nothing into any holder's ledger)
    _, status, output = run_to(superlink, out, "he", 4, f"{RECORD_DP} resume=true "
                               "dp.noise_multiplier=2.0")  # fmt: skip
    assert status == "finished:failed"
    named = "dp.noise_multiplier (checkpoint: 1.5, this run: 2.0)"
    assert "resume=true refused" in output and named in output, output[-3000:]
    assert files_of(out) == before  # nothing written: not config.yaml, not a ledger

    _, status, output = run_to(superlink, out, "he", 4, f"{RECORD_DP} resume=true")
    assert status == "finished:completed", output[-3000:]
    four = summary(out)["dp"]
    independent = accountants_epsilons(out)
    assert len(independent) == 3 and set(four["per_holder_epsilon"]) == set(independent)
    for holder, eps in independent.items():  # all 4 rounds' steps, not the last 2
        assert four["per_holder_epsilon"][holder] == pytest.approx(eps, rel=1e-9)
        assert eps > two["per_holder_epsilon"][holder]
    assert four["epsilon"] == pytest.approx(max(independent.values()), rel=1e-9)
    for path in ledgers:
        assert [b["round"] for b in json.loads(path.read_text())["bookings"]] == [1, 2, 3, 4]
    assert four["bounded"] is True and "n is treated as public" in four["unit"]


def test_the_default_log_has_one_line_per_round_and_no_framework_chatter(he_run):
    out, _, _, output = he_run
    rows = {row["round"]: row for row in json.loads((out / "metrics.json").read_text())}
    assert not [line for line in output.splitlines() if is_chatter(line)]
    assert "Tip: In future versions of Ray" not in output
    assert not [stage for stage in FLOWER_STAGES if stage in output]
    lines = re.findall(r"round (\d)/2 · 3/3 clients · train accuracy .* · (\d+\.\d) s", output)
    assert [rnd for rnd, _ in lines] == ["1", "2"]
    first, last = rows[1]["eval_accuracy"], rows[2]["eval_accuracy"]  # both in round 2's line
    assert f"eval accuracy {first:.3f} (round 1), {last:.3f} · up " in output
    assert "Run finished: 2 of 2 round(s) aggregated" in output
    secret, checkpoint = out / "keys" / "secret.ctx", out / "checkpoint.npz"
    assert f"fl-app decrypt --secret {secret} --checkpoint {checkpoint} --out model.keras" in output

    events = read_events(out / "tensorboard")
    for key, tag in (("eval_accuracy", "eval/accuracy"), ("bytes_up", "bytes/bytes_up")):
        assert events[tag] == pytest.approx({r: rows[r][key] for r in (1, 2)}, rel=1e-6)


def test_final_model_is_a_normal_keras_model(fedavg_run):
    import keras

    out, _, _ = fedavg_run
    net = keras.saving.load_model(out / "model.keras")
    assert net.output_shape == (None, 10)


def test_he_run_matches_plaintext_accuracy(he_run, fedavg_run):
    he_out, _, status, _ = he_run
    assert status == "finished:completed"
    facts = summary(he_out)
    assert (facts["privacy"], facts["strategy"]) == ("he", "fedavg")
    assert facts["encrypted"] is True
    assert facts["final_model"] is None  # the server cannot produce it
    plain = json.loads((fedavg_run[0] / "metrics.json").read_text())[2]  # round 2
    assert abs(facts["final_accuracy"] - plain["eval_accuracy"]) <= 0.01


def test_he_uploads_are_seeded_ciphertexts_at_most_twice_float32(he_run):
    he_out, _, _, _ = he_run
    rows = json.loads((he_out / "metrics.json").read_text())
    params = 38_282  # the digits CNN
    per_client = rows[-1]["bytes_up"] / rows[-1]["fit_clients"]  # round 2
    assert 1.5 < per_client / (4 * params) <= 2.0  # the seeded preset (issue 14)
    # the aggregate is a sum, not seeded: fit and evaluate each carry about twice that
    per_message = rows[-1]["bytes_down"] / (rows[-1]["fit_sampled"] + rows[-1]["eval_clients"])
    assert 3.0 < per_message / (4 * params) <= 4.0


def test_decrypt_turns_the_encrypted_checkpoint_into_a_keras_model(he_run, tmp_path):
    import keras

    from fl_app.config import compose_config
    from fl_app.ml.data import load_server_test
    from fl_app.ml.models import evaluate

    he_out, _, _, _ = he_run
    model_path = tmp_path / "model.keras"
    result = subprocess.run(
        [FL_APP, "decrypt", "--secret", str(he_out / "keys" / "secret.ctx"),
         "--checkpoint", str(he_out / "checkpoint.npz"), "--out", str(model_path)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    cfg = compose_config()
    test = load_server_test(cfg.task.name, 0.2, cfg.seed)  # held out by he_run
    accuracy = evaluate(keras.saving.load_model(model_path), test, batch_size=64)["accuracy"]
    assert accuracy > 0.8


def test_he_keys_never_reach_the_logs(he_run, superlink):
    he_out, _, _, output = he_run
    logs = output.encode() + superlink.log_file.read_bytes()
    arrays, _ = load_checkpoint(he_out / "checkpoint.npz")
    secrets = [
        (he_out / "keys" / "secret.ctx").read_bytes(),
        (he_out / "keys" / "public.ctx").read_bytes(),
        arrays[1].tobytes(),  # a ciphertext of the aggregate
    ]
    for blob in secrets:
        for offset in np.linspace(100, len(blob) - 40, 5).astype(int):
            piece = blob[offset : offset + 24]
            for form in (piece, piece.hex().encode(), base64.b64encode(piece)):
                assert form not in logs
    assert stat_mode(he_out / "keys" / "secret.ctx") == 0o600


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_he_round_completes_over_survivors_of_injected_faults(superlink, tmp_path):
    """Under FedProx (its term is the clients': it runs under HE), 2 rounds."""
    out = tmp_path / "faults"
    _, status, output = flwr_run(
        superlink,
        "privacy='he' strategy='fedprox' num-server-rounds=2 "
        f"output-dir='{out}' overrides='federation.num_supernodes=5 task=breast_cancer "
        "fault.fail_fraction=0.4 fault.corrupt_fraction=0.2'",
        federation="num-supernodes=5 client-resources-num-cpus=1",
    )
    assert status == "finished:completed"
    rows = json.loads((out / "metrics.json").read_text())
    for row in rows:  # every round: 2 failed, 1 corrupt payload rejected, 2 aggregated
        assert (row["fit_clients"], row["fit_failures"]) == (2, 3)
    assert "rejected: header is not valid" in output  # the corrupted payload, by reason
    assert summary(out)["final_accuracy"] > 0.5
    assert (summary(out)["strategy"], summary(out)["encrypted"]) == ("fedprox", True)


def _serverapp_pids(link: LocalSuperLink) -> list[int]:
    """PIDs of the ServerApp processes descending from our own SuperLink."""
    return pids_below(link.process.pid, "flwr-simulation")


def test_a_killed_he_dp_server_resumes_from_its_encrypted_checkpoint(superlink, tmp_path):
    """Kill the ServerApp process mid-run; rerun with resume=true; nothing done is lost.

    Under HE with DP on, so the resume restores an encrypted aggregate and the privacy
    accounting spans both processes.
    """
    out = tmp_path / "killed"
    run_config = (
        f"privacy='he' num-server-rounds=3 output-dir='{out}' overrides='{BASE} "
        "task=breast_cancer dp.enabled=true dp.noise_multiplier=0.8{extra}'"
    )
    killer_done = []

    def kill_after_a_round() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if (out / "checkpoint.npz").exists():
                _, meta = load_checkpoint(out / "checkpoint.npz")
                if meta["completed_rounds"] >= 1:
                    for pid in _serverapp_pids(superlink):
                        os.kill(pid, signal.SIGKILL)
                        killer_done.append(pid)
                    # The SuperLink would notice the dead ServerApp only after a
                    # heartbeat timeout; tell it now so the test does not wait.
                    runs = json.loads(superlink.flwr("ls", "--format", "json").stdout)["runs"]
                    for run in runs:
                        if not run["status"].startswith("finished"):
                            superlink.flwr("stop", str(run["run-id"]))
                    return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_after_a_round)
    killer.start()
    _, first_status, _ = flwr_run(superlink, run_config.format(extra=""))
    killer.join()
    assert killer_done, "the ServerApp was never seen to kill"
    assert first_status.startswith("finished:") and first_status != "finished:completed"
    _, meta = load_checkpoint(out / "checkpoint.npz")
    killed_after = meta["completed_rounds"]
    assert meta["encrypted"] is True
    assert 1 <= killed_after < 3
    saved = {int(r): row for r, row in meta["history"].items()}

    _, status, _ = flwr_run(superlink, run_config.format(extra=" resume=true"))
    assert status == "finished:completed"
    rows = {row["round"]: row for row in json.loads((out / "metrics.json").read_text())}
    assert sorted(rows) == [1, 2, 3]
    for rnd in range(1, killed_after + 1):  # completed rounds were not redone (their
        # evaluation may arrive later, with the next round's fit)
        assert saved[rnd].items() <= rows[rnd].items(), (saved[rnd], rows[rnd])
    facts = summary(out)
    assert facts["rounds_completed"] == 3 and facts["encrypted"] is True
    # DP: every round released the unweighted mean of all 3 clients' noised updates.
    assert all(row["fit_clients"] == 3 for row in rows.values())
    assert facts["dp"]["epsilon"] == epsilon([RoundRelease(1.0, 0.8)] * 3, 1e-5)
    assert "train_loss" not in rows[3]  # not privatised, so not reported


def test_secagg_matches_the_plaintext_aggregate_within_quantisation(
    superlink, fedavg_run, tmp_path
):
    out = tmp_path / "secagg"
    _, status, output = run_to(superlink, out, "secagg", 1)
    assert status == "finished:completed", output[-3000:]
    secagg = json.loads((out / "metrics.json").read_text())[1]  # round 1
    plain = json.loads((fedavg_run[0] / "metrics.json").read_text())[1]
    assert secagg["fit_clients"] == 3
    # the strategy sees one float64 aggregate; the wire carries each client's masked
    # vector plus keys and shares, more than a float32 model per client
    assert secagg["wire_bytes_up"] / secagg["fit_sampled"] > 4 * 38_282
    # Same seed, same clients: the server-side evaluation of the round-1 aggregate is
    # the same up to SecAgg+'s quantisation (2 x 8 / 2^22 per value and client).
    assert abs(secagg["centralized_loss"] - plain["centralized_loss"]) < 1e-3
    assert abs(secagg["centralized_accuracy"] - plain["centralized_accuracy"]) <= 0.01


def test_fedadam_runs_under_secagg_on_a_regression_task(superlink, tmp_path):
    """A server optimiser where the server sees only the sum, on the design document's
    regression MLP: 2 real rounds, judged by R², with Adam's moments in the checkpoint."""
    out = tmp_path / "out"
    _, status, output = flwr_run(
        superlink,
        f"privacy='secagg' strategy='fedadam' num-server-rounds=2 output-dir='{out}' "
        f"overrides='{BASE} task=diabetes strategy.algorithm.eta=0.05'",
    )
    assert status == "finished:completed", output[-3000:]
    facts = summary(out)
    assert (facts["privacy"], facts["strategy"], facts["rounds_completed"]) == (
        "secagg", "fedadam", 2,
    )  # fmt: skip
    assert facts["primary_metric"] == "r2_score" and facts["final_accuracy"] is None
    rows = json.loads((out / "metrics.json").read_text())
    assert rows[-1]["eval_loss"] < rows[0]["centralized_loss"]  # it learns from round 0
    assert "r2_score" in (out / "metrics.csv").read_text().splitlines()[0]
    _, meta = load_checkpoint(out / "checkpoint.npz")
    assert sorted(meta["server_state"]) == ["m_t", "v_t"]


def test_an_he_run_that_aggregates_no_round_ends_failed_and_says_so(superlink, tmp_path):
    """Issue 12 finding 1: every update rejected used to end `finished:completed` with
    `rounds_completed: 1` and the untrained model named as the final one."""
    out = tmp_path / "nothing"
    _, status, output = run_to(superlink, out, "he", 1, "fault.corrupt_fraction=1.0")
    assert status == "finished:failed"
    result = summary(out)
    assert (result["rounds_completed"], result["rounds_run"]) == (0, 1)
    assert result["rounds_not_aggregated"] == [1] and result["final_model"] is None
    last = [line for line in output.splitlines() if line.strip()][-1]
    assert "run failed: NoRoundAggregated: no round aggregated in 1 round(s)" in last, last
