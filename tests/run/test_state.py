"""Checkpoints are atomic and a run resumes from them with its history."""

from __future__ import annotations

import numpy as np
import pytest

from fl_app.config import compose_config
from fl_app.fl.factory import new_model
from fl_app.ml.models import weights_of
from fl_app.run.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from fl_app.run.state import RunState, run_identity


def run_state(cfg, run_dir):
    """The RunState the ServerApp makes for `cfg` (plaintext: no key fingerprint)."""
    identity = run_identity(cfg, None)
    if cfg.resume:
        return RunState.resume(run_dir, identity)
    return RunState.fresh(run_dir, identity, weights_of(new_model(cfg)))


def test_save_load_round_trip_keeps_arrays_and_meta(tmp_path):
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([], np.float32)]
    arrays.append(np.frombuffer(b"\x00\xffciphertext", dtype=np.uint8))
    save_checkpoint(tmp_path / "c.npz", arrays, {"completed_rounds": 3, "x": [1, 2]})
    loaded, meta = load_checkpoint(tmp_path / "c.npz")
    assert meta == {"completed_rounds": 3, "x": [1, 2]}
    for want, got in zip(arrays, loaded, strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temp file left


def test_overwrite_replaces_whole_file(tmp_path):
    path = tmp_path / "c.npz"
    save_checkpoint(path, [np.zeros(3)], {"completed_rounds": 1})
    save_checkpoint(path, [np.ones(2)], {"completed_rounds": 2})
    arrays, meta = load_checkpoint(path)
    assert meta["completed_rounds"] == 2
    np.testing.assert_array_equal(arrays[0], np.ones(2))


def test_missing_and_corrupt_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(tmp_path / "bad.npz")


def test_run_state_resumes_weights_round_and_history(tmp_path):
    cfg = compose_config([f"output_dir={tmp_path}", "task=breast_cancer"])
    fresh = run_state(cfg, tmp_path)
    assert fresh.completed_rounds == 0
    trained = [w + 1.0 for w in fresh.weights]
    fresh.history.record(1, eval_accuracy=0.5)
    fresh.history.record(2, eval_accuracy=0.75)
    fresh.save(2, trained, False)

    resumed = run_state(
        compose_config([f"output_dir={tmp_path}", "task=breast_cancer", "resume=true"]),
        tmp_path,
    )
    assert resumed.completed_rounds == 2
    assert resumed.history.last("eval_accuracy") == 0.75
    for want, got in zip(trained, resumed.weights, strict=True):
        np.testing.assert_array_equal(got, want)


def test_fresh_run_refuses_to_overwrite_a_checkpoint(tmp_path):
    cfg = compose_config([f"output_dir={tmp_path}", "task=breast_cancer"])
    state = run_state(cfg, tmp_path)
    state.save(1, state.weights, False)
    with pytest.raises(CheckpointError, match="resume=true"):
        run_state(cfg, tmp_path)


def test_resume_refuses_a_checkpoint_of_another_task(tmp_path):
    digits = compose_config([f"output_dir={tmp_path}"])
    state = run_state(digits, tmp_path)
    state.save(1, state.weights, False)
    other = compose_config([f"output_dir={tmp_path}", "task=breast_cancer", "resume=true"])
    with pytest.raises(CheckpointError, match=r"task \(checkpoint: 'digits', this run: "):
        run_state(other, tmp_path)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("dp.enabled=true", "dp.enabled (checkpoint: False, this run: True)"),
        ("dp.noise_multiplier=1.5", "dp.noise_multiplier (checkpoint: 1.0, this run: 1.5)"),
        ("+task.model_args.hidden=[8]", "model_args.hidden (checkpoint: None, this run: [8])"),
        ("task.preprocess=none", "preprocess (checkpoint: 'standardize', this run: 'none')"),
        ("task.preprocess_stats=null", "preprocess_stats (checkpoint: 'published', this run: None"),
        ("partition=dirichlet", "partition.name (checkpoint: 'iid', this run: 'dirichlet')"),
        ("seed=1", "seed (checkpoint: 42, this run: 1)"),
    ],
)
def test_a_resume_that_would_change_the_model_or_the_guarantee_is_refused(tmp_path, change, named):
    base = [f"output_dir={tmp_path}", "task=breast_cancer"]
    state = run_state(compose_config(base), tmp_path)
    state.save(1, state.weights, False)
    before = (tmp_path / "checkpoint.npz").read_bytes()
    with pytest.raises(CheckpointError, match="resume=true refused") as refused:
        run_state(compose_config([*base, "resume=true", change]), tmp_path)
    assert named in str(refused.value)
    assert (tmp_path / "checkpoint.npz").read_bytes() == before
    assert run_state(compose_config([*base, "resume=true", "num_rounds=9"]), tmp_path)


def test_a_simulated_resume_needs_the_same_data(tmp_path):
    cfg = compose_config([f"output_dir={tmp_path}", "task=breast_cancer"])
    saved = run_identity(cfg, None, "a" * 64)
    RunState.fresh(tmp_path, saved, weights_of(new_model(cfg))).save(1, [np.zeros(1)], False)
    with pytest.raises(CheckpointError, match=r"data \(checkpoint: 'aaaa"):
        RunState.resume(tmp_path, run_identity(cfg, None, "b" * 64))


def test_a_checkpoint_written_before_the_privacy_group_resumes_and_decrypts(tmp_path):
    """Issue 24: `strategy` named the privacy mode and diabetes' model was `seed_mlp`.
    Such a checkpoint still resumes under the same settings, and its encrypted global
    model still decrypts to a Keras model."""
    from fl_app.crypto.keys import PUBLIC_NAME, SECRET_NAME, generate_keys, load_context
    from fl_app.crypto.packing import Layout
    from fl_app.crypto.payload import EncryptedSum, encrypt_update, to_arrays
    from fl_app.crypto.presets import get_preset
    from fl_app.ops.decrypt import decrypt_checkpoint

    cfg = compose_config(["task=diabetes", "privacy=he"])
    weights = weights_of(new_model(cfg))
    today = run_identity(cfg, "f1ng3rpr1nt")
    old = {k: v for k, v in today.items() if k != "privacy"}
    old.update(strategy="he", model="seed_mlp")
    generate_keys(tmp_path / "keys", "seeded")
    preset = get_preset("seeded")
    secret, public = (load_context(tmp_path / "keys" / n) for n in (SECRET_NAME, PUBLIC_NAME))
    total = EncryptedSum(public, preset, Layout.of(weights))
    total.add(total.check(encrypt_update(secret, preset, weights, 1.0)), 1.0)
    meta = {"identity": old, "encrypted": True, "completed_rounds": 2, "history": {},
            "wall_seconds": 1.0}  # fmt: skip
    run_dir = tmp_path / "run"
    save_checkpoint(run_dir / "checkpoint.npz", to_arrays(total.result()), meta)

    with pytest.raises(CheckpointError, match=r"model \(checkpoint: 'seed_mlp'"):
        RunState.resume(run_dir, today)  # today's name for the model differs, and says so
    resumed = RunState.resume(run_dir, {**today, "model": "seed_mlp"})
    assert resumed.encrypted and resumed.completed_rounds == 2

    line = decrypt_checkpoint(tmp_path / "keys" / SECRET_NAME, run_dir / "checkpoint.npz",
                              tmp_path / "model.keras")  # fmt: skip
    assert "diabetes/seed_mlp after round 2" in line
    import keras

    restored = keras.saving.load_model(tmp_path / "model.keras").get_weights()
    for got, want in zip(restored, weights, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
