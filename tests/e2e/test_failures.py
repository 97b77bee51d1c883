"""A failed run says why in its last line (issue 23, item 4), through a real `flwr run`
on a local simulation SuperLink (slow)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fl_app.ops.local_superlink import LocalSuperLink

pytestmark = pytest.mark.slow

FEDERATION = "num-supernodes=2 client-resources-num-cpus=1"


def last_line(output: str) -> str:
    """The last line the run's log stream showed (Flower's own `flwr run` lines after the
    stream are not the ServerApp's log)."""
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1]


def run_failing(link: LocalSuperLink, tmp_path: Path, overrides: str) -> tuple[str, str]:
    result = link.submit(
        f"privacy='he' num-server-rounds=1 output-dir='{tmp_path / 'out'}' "
        f"overrides='federation.num_supernodes=2 output_root={tmp_path} {overrides}'",
        FEDERATION,
    )
    assert result.status == "finished:failed", result.output[-3000:]
    return last_line(result.output), result.output


# (a config key, a data file and a key file the server refuses, in process:
# tests/fl/test_failures.py; here, a failure the clients report, through Flower's stream)
CASES = {
    "budget": (
        "task=breast_cancer dp.enabled=true dp.level=record dp.noise_multiplier=0.5 "
        "dp.max_epsilon=0.01 train.optimizer=sgd",
        r"NoRoundAggregated: no round aggregated in 1 round\(s\).*the clients: BudgetExceeded: "
        r".*dp\.max_epsilon=0\.01.* — see each dropped client's reason",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_failed_run_ends_with_one_line_naming_its_cause_and_fix(superlink, tmp_path, case):
    overrides, pattern = CASES[case]
    line, output = run_failing(superlink, tmp_path, overrides)
    assert "run failed: " in line and re.search(pattern, line), output[-4000:]
    assert "Traceback" not in output  # the traceback went to the run's failure log
    log = next((tmp_path / "failed").glob("run*.log"))
    assert f"(traceback: {log})" in line
    assert "Traceback (most recent call last)" in log.read_text()
    assert log.stat().st_mode & 0o777 == 0o600
