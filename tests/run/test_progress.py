"""The per-round line, the end-of-run block, and what the trackers are handed."""

from __future__ import annotations

import logging
from pathlib import Path

from fl_app.run.history import RunHistory
from fl_app.run.progress import RunFacts, RunReport, human_bytes, round_line, summary_lines

FACTS = RunFacts(num_rounds=3, primary="accuracy", model_params=10_000)  # 40 kB of float32


def history(**rounds: dict) -> RunHistory:
    h = RunHistory()
    for name, values in rounds.items():
        h.record(int(name[1:]), **values)
    return h


def test_a_round_line_says_clients_metrics_upload_and_time():
    h = history(
        r2=dict(fit_sampled=10, fit_clients=10, fit_failures=0, train_accuracy=0.6425,
                eval_accuracy=0.81724, wire_bytes_up=780_000, round_seconds=9.94)
    )  # fmt: skip
    # 78 kB per client against 40 kB of float32 weights
    assert round_line(h, 2, FACTS) == (
        "round 2/3 · 10/10 clients · train accuracy 0.642 · eval accuracy 0.817 · "
        "up 78 kB/client (1.95× float32) · 9.9 s"
    )


def test_failures_rejections_and_a_kept_model_are_in_the_line():
    h = history(r1=dict(fit_sampled=10, fit_clients=1, fit_failures=9, aggregated=False))
    line = round_line(h, 1, FACTS)
    assert "1/10 clients (9 failed or rejected)" in line
    assert "not aggregated: previous model kept" in line


def test_an_evaluation_of_an_earlier_round_is_labelled_and_epsilon_shown():
    """evaluate_with_fit: round 1's model is evaluated in round 2's fit."""
    h = history(
        r1=dict(fit_sampled=4, fit_clients=4, eval_accuracy=0.5),
        r2=dict(fit_sampled=4, fit_clients=4, dp_epsilon_max=6.912, centralized_accuracy=0.7),
    )
    line = round_line(h, 2, FACTS)
    assert "eval accuracy 0.500 (round 1)" in line
    assert "server accuracy 0.700" in line and "ε 6.91" in line


def lines_of(report: RunReport, caplog, rounds: list[dict]) -> list[str]:
    with caplog.at_level(logging.INFO, logger="fl_app"):
        for rnd, values in enumerate(rounds, start=1):
            for of, value in values.items():
                report.history.record(of, eval_accuracy=value)
            report.history.record(rnd, fit_sampled=2, fit_clients=2, round_seconds=1.0)
            report.round_complete(rnd)
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("round ")]


def test_every_evaluation_is_in_one_line_when_it_arrives_with_the_next_fit(caplog):
    """evaluate_with_fit (the default): round r's evaluation arrives in round r+1; the
    last round evaluates separately, so its line gives two."""
    report = RunReport(RunHistory(), FACTS)
    lines = lines_of(report, caplog, [{}, {1: 0.5}, {2: 0.6, 3: 0.7}])
    assert "eval" not in lines[0]
    assert "eval accuracy 0.500 (round 1) ·" in lines[1]
    assert "eval accuracy 0.600 (round 2), 0.700 ·" in lines[2]


def test_separate_evaluations_are_each_in_their_own_rounds_line_once(caplog):
    report = RunReport(RunHistory(), FACTS)
    lines = lines_of(report, caplog, [{1: 0.5}, {2: 0.6}, {3: 0.7}])
    assert ["eval accuracy 0.500 ·" in lines[0], "eval accuracy 0.600 ·" in lines[1],
            "eval accuracy 0.700 ·" in lines[2]] == [True, True, True]  # fmt: skip


def test_the_primary_metric_of_a_regression_task():
    h = history(r1=dict(fit_sampled=2, fit_clients=2, train_mae=41.5, eval_mae=44.25))
    line = round_line(h, 1, RunFacts(num_rounds=1, primary="mae"))
    assert "train mae 41.5 · eval mae 44.25" in line


def test_bytes_are_human():
    assert [human_bytes(n) for n in (512, 1_541_520, 2.5e9)] == ["512 B", "1.54 MB", "2.5 GB"]


def test_the_summary_block_of_an_encrypted_run_says_how_to_decrypt():
    summary = dict(
        rounds_completed=3, rounds_run=3, wall_seconds=14.2, primary_metric="accuracy",
        final_metric=0.89310344, final_loss=0.4275, run_dir="/runs/r1", final_model=None,
        encrypted=True, checkpoint="/runs/r1/checkpoint.npz",
        dp={"epsilon": 8.0123, "delta": 1e-5},
    )  # fmt: skip
    lines = summary_lines(summary, ["summary.json", "tensorboard/"])
    assert lines[0] == (
        "Run finished: 3 of 3 round(s) aggregated in 14.2 s, final accuracy 0.893, loss 0.427"
    )
    assert lines[1] == "  artifacts  /runs/r1 (summary.json, tensorboard/)"
    assert lines[2] == (
        "  model      encrypted; decrypt it where secret.ctx lives: fl-app decrypt --secret "
        "secret.ctx --checkpoint /runs/r1/checkpoint.npz --out model.keras"
    )
    assert lines[3] == "  privacy    ε 8.01 at δ 1e-05"
    # Issue 23, item 5: a hint that works verbatim when the run knows the secret's path and
    # the task is a user app's.
    known = summary_lines(summary, secret="/runs/r1/keys/secret.ctx", app_dir=Path("/apps/mine"))
    assert known[2] == (
        "  model      encrypted; decrypt it: fl-app decrypt --secret /runs/r1/keys/secret.ctx "
        "--checkpoint /runs/r1/checkpoint.npz --out model.keras --app /apps/mine"
    )


def test_the_summary_block_of_a_plaintext_run_names_its_model():
    summary = dict(
        rounds_completed=2, rounds_run=2, wall_seconds=3, final_metric=None, run_dir="/r",
        final_model="/r/model.keras", encrypted=False,
    )  # fmt: skip
    lines = summary_lines(summary)
    assert lines[0].endswith("final accuracy —") and lines[2] == "  model      /r/model.keras"


def test_sinks_get_each_value_once_and_later_additions_to_earlier_rounds(caplog):
    got: list[tuple[int, dict]] = []
    h = history(r0=dict(centralized_accuracy=0.1), r1=dict(fit_clients=2, fit_sampled=2))
    report = RunReport(h, FACTS, sinks=[lambda rnd, values: got.append((rnd, values))])
    with caplog.at_level(logging.DEBUG, logger="fl_app"):
        report.round_complete(1)
    h.record(1, eval_accuracy=0.5)  # evaluate_with_fit: arrives with round 2
    h.record(2, fit_clients=2, fit_sampled=2)
    report.round_complete(2)
    report.flush()
    assert got == [
        (0, {"centralized_accuracy": 0.1}),
        (1, {"fit_clients": 2, "fit_sampled": 2}),
        (1, {"eval_accuracy": 0.5}),
        (2, {"fit_clients": 2, "fit_sampled": 2}),
    ]
    assert any("round 1 record: {'round': 1" in r.getMessage() for r in caplog.records)


def test_a_failing_sink_is_switched_off_and_the_run_goes_on(caplog):
    def broken(rnd, values):
        raise OSError("disk full")

    got = []

    def working(rnd, values):
        got.append(rnd)

    report = RunReport(history(r1=dict(fit_clients=1)), FACTS, sinks=[broken, working])
    with caplog.at_level(logging.WARNING, logger="fl_app"):
        report.round_complete(1)
    assert "failed and is off for this run: disk full" in caplog.text
    assert report.sinks == [working] and got == [1]
