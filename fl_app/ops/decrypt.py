"""`fl-app decrypt`: an encrypted checkpoint and the secret context -> a .keras model."""

from __future__ import annotations

from pathlib import Path

from fl_app.crypto.integers import decrypt_digits, from_digit_sums
from fl_app.crypto.keys import load_secret_context
from fl_app.crypto.payload import decrypt_aggregate, to_payload
from fl_app.crypto.presets import get_preset
from fl_app.fl.factory import new_model
from fl_app.fl.statistics import unpack
from fl_app.ml.statistics import raw_input_model
from fl_app.ops.apps import compose_for_app
from fl_app.run.checkpoint import load_checkpoint, load_statistics, split_server_state


def decrypt_checkpoint(
    secret: Path, checkpoint: Path, out: Path, *, app_dir: Path | None = None
) -> str:
    """Write the decrypted global model to `out`; return a line saying what it is.

    `app_dir` is the app directory (`fl-app new`) of a task that is not fl_app's own
    (default: the current directory when it is one): its `conf/` and task module are
    what rebuild the model.
    """
    arrays, meta = load_checkpoint(checkpoint)
    arrays, _ = split_server_state(arrays, meta.get("server_state", {}))
    identity = meta.get("identity", {})
    if not meta.get("encrypted"):
        raise ValueError(f"{checkpoint} holds a plaintext model; nothing to decrypt")
    if "he_preset" not in identity:
        raise ValueError(
            f"{checkpoint} names no HE preset in its metadata (identity: {sorted(identity)}); "
            "it was not written by an fl_app HE run, or its metadata was changed"
        )
    preset = get_preset(identity["he_preset"])
    context = load_secret_context(secret)
    weights = decrypt_aggregate(context, preset, to_payload(arrays))
    cfg = compose_for_app([f"task={identity['task']}", f"task.model={identity['model']}"], app_dir)
    if "model_args" in identity:  # the run's own architecture (checkpoints since issue 21)
        cfg.task.model_args = dict(identity["model_args"])
    net = new_model(cfg)
    net.set_weights(weights)
    scaled = ""
    if (statistics := load_statistics(checkpoint.parent)) is not None:  # raw inputs in
        digits = decrypt_digits(context, preset, unpack(statistics["total"]))
        net = raw_input_model(net, from_digit_sums(digits))
        scaled = f", behind the federated statistics of {statistics['holders']} holders"
    out.parent.mkdir(parents=True, exist_ok=True)
    net.save(out)
    return (
        f"Wrote {out}: {identity['task']}/{identity['model']} after round "
        f"{meta['completed_rounds']}{scaled}"
    )
