"""Where a run stands: its directory, and its global state — fresh, or resumed from the
last checkpoint — saved atomically after every round."""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from fl_app.config import ConfigError
from fl_app.config.schema import AppConfig, plain
from fl_app.run.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    split_server_state,
    with_server_state,
)
from fl_app.run.history import RunHistory

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.npz"


def resolve_run_dir(cfg: AppConfig, run_id: int) -> Path:
    """`output_dir`, or a new time-stamped directory under `output_root`; checked to be
    a directory this process can create or write (nothing is written yet)."""
    if cfg.output_dir:
        key, run_dir = "output-dir", _absolute("output-dir", cfg.output_dir)
    else:
        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        key = "output_root"
        run_dir = _absolute("output_root", cfg.output_root) / f"{stamp}_run{run_id}"
    _require_writable_dir(key, run_dir)
    return run_dir


def _absolute(key: str, value: str) -> Path:
    """`value` as a path, refused unless absolute (or under ~): a relative one would
    resolve against wherever the SuperLink happened to be started."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise ConfigError(
            f"{key}={value!r} is invalid: allowed an absolute path (or one under ~); a "
            "relative one resolves against the directory the SuperLink was started in"
        )
    return path.resolve()


def _require_writable_dir(key: str, path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{key}={str(path)!r} is invalid: it is a file, allowed a directory")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{key}={str(path)!r} is invalid: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={str(path)!r} is invalid: {existing} is not writable")


def run_identity(
    cfg: AppConfig, key_fingerprint: str | None, data_fingerprint: str | None = None
) -> dict[str, Any]:
    """What a checkpoint must share with the run that resumes it: whatever determines the
    model it continues (task, model and its arguments, data, preprocessing, partitioning)
    and its privacy guarantee (mode, dp.*, HE preset and key). Extending the number of
    rounds is what a resume is for; anything else is a new run."""
    task = cfg.task
    identity: dict[str, Any] = {
        "privacy": cfg.privacy.name,
        "strategy": cfg.strategy.name,
        "task": task.name,
        "model": task.model,
        "model_args": plain(task.model_args),
        "source": task.source,
        "source_args": plain(task.source_args),
        "preprocess": task.preprocess,
        "preprocess_stats": plain(task.preprocess_stats),
        "objective": task.objective.type,
        "seed": cfg.seed,
        "client_test_fraction": task.client_test_fraction,
        "dp": plain(cfg.dp),
    }
    if cfg.federation.name == "simulation":  # the server partitions the pool itself
        identity.update(
            partition=_partition(cfg),
            num_partitions=cfg.federation.num_supernodes,
            server_test_fraction=task.server_test_fraction,
        )
    if data_fingerprint is not None:
        identity["data"] = data_fingerprint
    if key_fingerprint is not None:
        identity.update(he_preset=cfg.he.preset, he_fingerprint=key_fingerprint)
    return identity


def _partition(cfg: AppConfig) -> dict[str, Any]:
    """partition.*, without natural's keys in other partitions (as checkpoints before it)."""
    partition = plain(cfg.partition)
    if partition["name"] != "natural":
        partition = {k: v for k, v in partition.items() if k not in ("by", "keep_column")}
    return partition


def upgraded(identity: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's identity in today's terms: before the privacy/ group, `strategy`
    named the privacy mode (fedavg, he, secagg) and the algorithm was FedAvg."""
    if "privacy" in identity or "strategy" not in identity:
        return identity
    old = identity["strategy"]
    return {**identity, "privacy": "none" if old == "fedavg" else old, "strategy": "fedavg"}


def differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two identities, each with both values."""
    if isinstance(saved, dict) and isinstance(current, dict):
        found = []
        for key in sorted(set(saved) | set(current), key=str):
            found += differences(saved.get(key), current.get(key), f"{prefix}{key}.")
        return found
    if saved == current:
        return []
    return [f"{prefix.rstrip('.')} (checkpoint: {saved!r}, this run: {current!r})"]


class RunState:
    """The global model (plaintext or encrypted), completed rounds and history of a run.

    Made by `fresh` (a new run) or `resume` (from its checkpoint); `save` checkpoints it.
    """

    def __init__(
        self,
        checkpoint_path: Path,
        identity: dict[str, Any],
        *,
        weights: list[np.ndarray],
        encrypted: bool,
        history: RunHistory,
        completed_rounds: int,
        previous_seconds: float,
        server_state: dict[str, list[np.ndarray]] | None = None,
    ) -> None:
        self.checkpoint_path = checkpoint_path
        self.server_state = server_state or {}  # the server optimiser's (FedAdam, FedAvgM)
        self.identity = identity
        self.weights = weights
        self.encrypted = encrypted
        self.history = history
        self.completed_rounds = completed_rounds
        self.previous_seconds = previous_seconds
        self._started = time.monotonic()

    @staticmethod
    def check_start(run_dir: Path, *, resume: bool) -> Path:
        """The checkpoint path of a run about to start in `run_dir`, refusing a fresh run
        over a checkpoint and a resume without one, before anything is written."""
        path = run_dir / CHECKPOINT_NAME
        if not resume and path.exists():
            raise CheckpointError(
                f"{path} already exists; pass overrides='resume=true' "
                "to continue that run, or choose another output-dir"
            )
        if resume and not path.is_file():
            raise CheckpointError(f"resume=true needs {path}: no such checkpoint")
        return path

    @classmethod
    def fresh(
        cls, run_dir: Path, identity: dict[str, Any], initial_weights: list[np.ndarray]
    ) -> RunState:
        """A new run from `initial_weights`; refuses a directory that holds a checkpoint."""
        path = cls.check_start(run_dir, resume=False)
        return cls(
            path,
            identity,
            weights=initial_weights,
            encrypted=False,
            history=RunHistory(),
            completed_rounds=0,
            previous_seconds=0.0,
        )

    @classmethod
    def resume(cls, run_dir: Path, identity: dict[str, Any]) -> RunState:
        """The run whose checkpoint is in `run_dir`; refuses one of another identity."""
        path = run_dir / CHECKPOINT_NAME
        arrays, meta = load_checkpoint(path)
        weights, server_state = split_server_state(arrays, meta.get("server_state", {}))
        changed = differences(upgraded(meta.get("identity") or {}), identity)
        if changed:
            raise CheckpointError(
                f"resume=true refused: checkpoint {path} was written by a run with other "
                f"settings: {'; '.join(changed)}. A resumed run keeps what determines its "
                "model and its privacy guarantee (only num-server-rounds may grow); start "
                "a new run in another output-dir to change them"
            )
        state = cls(
            path,
            identity,
            weights=weights,
            server_state=server_state,
            encrypted=bool(meta["encrypted"]),
            history=RunHistory(meta["history"]),
            completed_rounds=int(meta["completed_rounds"]),
            previous_seconds=float(meta["wall_seconds"]),
        )
        logger.info("Resuming from %s after round %d", path, state.completed_rounds)
        return state

    def wall_seconds(self) -> float:
        return self.previous_seconds + time.monotonic() - self._started

    def save(
        self,
        completed_round: int,
        weights: list[np.ndarray],
        encrypted: bool,
        server_state: dict[str, list[np.ndarray]] | None = None,
    ) -> None:
        """Checkpoint the global model (and the server optimiser's state) after
        `completed_round` (atomic)."""
        self.weights = weights
        self.encrypted = encrypted
        self.server_state = server_state or {}
        arrays, counts = with_server_state(weights, self.server_state)
        save_checkpoint(
            self.checkpoint_path,
            arrays,
            {
                "server_state": counts,
                "identity": self.identity,
                "encrypted": encrypted,
                "completed_rounds": completed_round,
                "history": self.history.to_json(),
                "wall_seconds": self.wall_seconds(),
            },
        )
