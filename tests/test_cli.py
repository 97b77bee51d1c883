"""`fl-app keygen` as an operator runs it."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

FL_APP = str(Path(sys.executable).parent / "fl-app")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([FL_APP, *args], capture_output=True, text=True, check=False)


def test_keygen_writes_keys_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "keys"
    first = run("keygen", "--out", str(out))
    assert first.returncode == 0, first.stderr
    manifest = json.loads((out / "keys.json").read_text())
    assert manifest["preset"] == "seeded"
    assert manifest["fingerprint"] in first.stdout
    assert stat.S_IMODE((out / "secret.ctx").stat().st_mode) == 0o600
    refused = run("keygen", "--out", str(out))
    assert refused.returncode == 2
    assert "--force" in refused.stderr
    forced = run("keygen", "--out", str(out), "--preset", "nvflare", "--force")
    assert forced.returncode == 0, forced.stderr
    assert json.loads((out / "keys.json").read_text())["preset"] == "nvflare"


def test_keygen_rejects_unknown_preset(tmp_path):
    result = run("keygen", "--out", str(tmp_path), "--preset", "tiny")
    assert result.returncode == 2
    assert "invalid choice: 'tiny'" in result.stderr


def test_help_lists_the_operator_commands_not_the_internal_one():
    result = run("--help")
    assert result.returncode == 0
    assert "keygen" in result.stdout and "federation" in result.stdout
    assert "warm-superexec" not in result.stdout
    assert run("warm-superexec", "--help").returncode == 0  # still there for `federation up`
