"""Issue 12, files and directories: a refused run touches nothing, a damaged checkpoint
says so, a bad output-dir is named. Each test failed before its fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from runs import refused_start

from fl_app.config import ConfigError, compose_config
from fl_app.run.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

FL_APP = str(Path(sys.executable).parent / "fl-app")


def start(run_dir: Path, privacy: str, overrides: str = "") -> None:
    """`refused_start`, raising the error behind the one line (these tests name it)."""
    raise refused_start(run_dir, privacy, overrides).__cause__ from None


@pytest.fixture
def other_run(tmp_path):
    """A directory holding another run: a plaintext digits checkpoint and its config."""
    run_dir = tmp_path / "run"
    identity = {"strategy": "fedavg", "task": "digits", "model": "cnn"}
    meta = {"identity": identity, "encrypted": False, "completed_rounds": 2, "history": {}}
    save_checkpoint(run_dir / "checkpoint.npz", [np.zeros(3)], {**meta, "wall_seconds": 1.0})
    (run_dir / "config.yaml").write_text("the other run's config\n")
    return run_dir


def untouched(run_dir: Path) -> bool:
    names = sorted(p.name for p in run_dir.iterdir())
    return names == ["checkpoint.npz", "config.yaml"] and (
        (run_dir / "config.yaml").read_text() == "the other run's config\n"
    )


@pytest.mark.parametrize(
    ("privacy", "overrides", "error", "message"),
    [
        ("he", "resume=true", ConfigError, "uses the keys its first run generated"),
        ("none", "resume=true task=breast_cancer task.model=mlp", CheckpointError,
         "resume=true refused: checkpoint .* task "),
        ("none", "", CheckpointError, "already exists"),
        ("he", "", CheckpointError, "already exists"),
    ],
)  # fmt: skip
def test_a_refused_run_leaves_the_directory_it_refused_as_it_was(
    other_run, privacy, overrides, error, message
):
    with pytest.raises(error, match=message):
        start(other_run, privacy, overrides)
    assert untouched(other_run)  # no config.yaml written over it, no keys generated into it


def test_resume_without_a_checkpoint_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(CheckpointError, match=r"resume=true needs .*: no such checkpoint"):
        start(tmp_path / "empty", "none", "resume=true")
    assert not (tmp_path / "empty").exists()


def damaged_copies(path: Path, tmp_path: Path) -> list[Path]:
    data = path.read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    copies = {"truncated": data[: len(data) // 2], "flipped": bytes(flipped), "empty": b"",
              "text": b"not a checkpoint\n"}  # fmt: skip
    out = []
    for name, content in copies.items():
        (tmp_path / f"{name}.npz").write_bytes(content)
        out.append(tmp_path / f"{name}.npz")
    return out


def refused_decrypt(checkpoint: Path, tmp_path: Path) -> str:
    """`fl-app decrypt` of `checkpoint`, which must exit 2 without a traceback: its stderr."""
    result = subprocess.run(
        [FL_APP, "decrypt", "--secret", str(tmp_path / "none.ctx"), "--checkpoint",
         str(checkpoint), "--out", str(tmp_path / "m.keras")],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def test_a_damaged_checkpoint_is_named_as_damaged_on_resume_and_in_decrypt(other_run, tmp_path):
    for bad in damaged_copies(other_run / "checkpoint.npz", tmp_path):
        with pytest.raises(CheckpointError, match=rf"checkpoint {bad} is damaged"):
            load_checkpoint(bad)
        assert f"checkpoint {bad} is damaged" in refused_decrypt(bad, tmp_path)


def test_an_output_dir_that_cannot_be_a_directory_is_named(tmp_path):
    afile = tmp_path / "a_file"
    afile.write_text("x")
    for run_dir, reason in ((afile, "it is a file"), (afile / "run", "a_file is a file")):
        with pytest.raises(ConfigError, match=rf"output-dir='{run_dir}' is invalid: .*{reason}"):
            start(run_dir, "none")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_output_dir_is_named(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ConfigError, match=r"output-dir=.* is not writable"):
        start(locked / "run", "none")


def test_a_tracking_store_that_does_not_work_refuses_the_run_before_keys_exist(tmp_path):
    pytest.importorskip("mlflow")
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"tracking.uri='nosuchscheme://x' is invalid"):
        start(run_dir, "he", "tracking=mlflow tracking.uri=nosuchscheme://x")
    assert not run_dir.exists()  # no keys generated, no event files


def test_decrypt_of_a_checkpoint_without_its_preset_names_what_is_missing(tmp_path):
    """Issue 22, item 6: a raw KeyError before."""
    from fl_app.run.checkpoint import save_checkpoint

    bad = tmp_path / "checkpoint.npz"
    meta = {"identity": {"task": "digits"}, "encrypted": True, "completed_rounds": 1}
    save_checkpoint(bad, [np.zeros(3, np.uint8)], meta)
    assert "names no HE preset in its metadata" in refused_decrypt(bad, tmp_path)


def test_a_key_file_seal_refuses_keeps_seals_reason(tmp_path):
    from fl_app.crypto.keys import HEKeyError, load_context

    bad = tmp_path / "public.ctx"
    bad.write_bytes(b"\x5e\xa1" + b"\0" * 64)  # SEAL's magic, then nothing it can read
    with pytest.raises(HEKeyError, match=rf"{bad} is not an HE context: \w+: .+"):
        load_context(bad)


def test_fl_app_new_refuses_fl_app_itself(tmp_path):
    """Issue 22, item 7 (an app named fl_app would depend on itself). A bundled task's
    name is allowed since issue 23: the app's conf/ is searched first, so its task wins."""
    result = subprocess.run([FL_APP, "new", str(tmp_path / "app"), "--name", "fl_app"],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "name='fl_app' is invalid: the project would depend on itself" in result.stderr
    assert not (tmp_path / "app").exists()


@pytest.mark.parametrize("key", ["output_dir", "output_root"])
def test_a_relative_run_directory_is_refused_not_resolved_against_the_superlinks(key):
    from fl_app.run.state import resolve_run_dir

    cfg = compose_config([f"{key}=runs/mine"])
    key_named = "output-dir" if key == "output_dir" else key
    with pytest.raises(ConfigError, match=rf"{key_named}='runs/mine' is invalid: allowed an abs"):
        resolve_run_dir(cfg, 1)
