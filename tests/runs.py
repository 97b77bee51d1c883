"""Runs for tests (imported as `from runs import ...`): a real `flwr run` on a local
SuperLink, and the ServerApp driven to where it refuses a run."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from fl_app.fl.failures import RunFailed
from fl_app.ops.local_superlink import LocalSuperLink
from fl_app.server_app import main

FEDERATION = "num-supernodes=3 client-resources-num-cpus=1"


def refused_start(
    run_dir: Path,
    privacy: str,
    overrides: str = "",
    output_root: Path | None = None,
    strategy: str = "fedavg",
) -> RunFailed:
    """The ServerApp's main up to where it refuses (it never reaches the Grid): its
    one-line failure (tests/fl/test_failures.py checks the line)."""
    root = output_root or run_dir.parent / "outs"  # tracebacks of failed runs go there
    context = SimpleNamespace(
        run_id=7,
        run_config={
            "privacy": privacy, "strategy": strategy, "num-server-rounds": 1,
            "output-dir": str(run_dir),
            "overrides": f"federation.num_supernodes=2 output_root={root} {overrides}",
        },
    )  # fmt: skip
    with pytest.raises(RunFailed) as caught:
        main(grid=None, context=context)
    return caught.value


def flwr_run(
    link: LocalSuperLink, run_config: str, federation: str = FEDERATION
) -> tuple[int, str, str]:
    """Submit a run like the README does, wait for it; (run id, final status, output)."""
    result = link.submit(run_config, federation)
    return result.run_id, result.status, result.output
