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


def test_decrypt_rebuilds_the_runs_own_architecture_from_its_model_args(tmp_path):
    """A checkpoint's identity carries `model_args` (issue 21): a run with another hidden
    layout decrypts into that layout, not the task's default one."""
    import numpy as np

    from fl_app.config import compose_config
    from fl_app.crypto.keys import generate_keys, load_public_context, load_secret_context
    from fl_app.crypto.packing import Layout
    from fl_app.crypto.payload import EncryptedSum, encrypt_update, to_arrays
    from fl_app.crypto.presets import get_preset
    from fl_app.fl.factory import new_model
    from fl_app.ops.decrypt import decrypt_checkpoint
    from fl_app.run.checkpoint import save_checkpoint
    from fl_app.run.state import run_identity

    generate_keys(tmp_path / "keys", "seeded")
    preset = get_preset("seeded")
    secret = load_secret_context(tmp_path / "keys" / "secret.ctx")
    cfg = compose_config(["task=breast_cancer", "+task.model_args.hidden=[8]"])
    weights = new_model(cfg).get_weights()
    total = EncryptedSum(load_public_context(tmp_path / "keys" / "public.ctx"), preset,
                         Layout.of(weights))  # fmt: skip
    total.add(total.check(encrypt_update(secret, preset, weights, 1.0)), 1.0)
    identity = run_identity(cfg, "fingerprint")
    save_checkpoint(tmp_path / "checkpoint.npz", to_arrays(total.result()),
                    {"identity": identity, "encrypted": True, "completed_rounds": 1})  # fmt: skip
    decrypt_checkpoint(tmp_path / "keys" / "secret.ctx", tmp_path / "checkpoint.npz",
                       tmp_path / "model.keras")  # fmt: skip
    import keras

    net = keras.saving.load_model(tmp_path / "model.keras")
    assert [w.shape for w in net.get_weights()] == [w.shape for w in weights]
    assert net.get_weights()[0].shape == (30, 8)
    np.testing.assert_allclose(net.get_weights()[0], weights[0], atol=1e-5)
