"""The round loop: wait for enough nodes, then Flower's workflow (plain or SecAgg+)."""

from __future__ import annotations

import logging
import time

from flwr.app import Context
from flwr.server import Grid, LegacyContext, ServerConfig
from flwr.server.strategy import Strategy
from flwr.server.workflow import DefaultWorkflow
from hydra.utils import get_method
from omegaconf import DictConfig

from fl_app.config import Mode
from fl_app.fl.secagg import ScreenedSecAggPlusWorkflow

logger = logging.getLogger(__name__)


def default_workflow(cfg: DictConfig) -> DefaultWorkflow:
    """Flower's default round loop: fit, then evaluate."""
    return DefaultWorkflow()


def secagg_workflow(cfg: DictConfig) -> DefaultWorkflow:
    """The default loop whose fit step is SecAgg+ (around the same strategy)."""
    strat = cfg.strategy
    num_shares = strat.secagg_num_shares
    threshold = strat.secagg_reconstruction_threshold
    return DefaultWorkflow(
        fit_workflow=ScreenedSecAggPlusWorkflow(
            num_shares=int(num_shares) if num_shares >= 1 else float(num_shares),
            reconstruction_threshold=int(threshold) if threshold >= 1 else float(threshold),
            clipping_range=float(strat.secagg_clipping_range),
            quantization_range=int(strat.secagg_quantization_range),
        )
    )


def wait_for_nodes(grid: Grid, cfg: DictConfig) -> None:
    """Fail clearly, instead of waiting forever, when too few nodes connect."""
    needed = int(cfg.strategy.min_available_clients)
    timeout = float(cfg.federation.node_wait_timeout)
    deadline = time.monotonic() + timeout
    while (connected := len(list(grid.get_node_ids()))) < needed:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{connected} node(s) connected within {timeout:.0f}s "
                f"(federation.node_wait_timeout), but strategy.min_available_clients="
                f"{needed} are required"
            )
        time.sleep(1.0)
    if connected != cfg.federation.num_supernodes:
        logger.warning(
            "%d nodes connected; federation.num_supernodes says %d",
            connected,
            cfg.federation.num_supernodes,
        )


def run_rounds(
    cfg: DictConfig, mode: Mode, grid: Grid, context: Context, strategy: Strategy, remaining: int
) -> None:
    """The `remaining` rounds of the run with the mode's workflow (none: say so)."""
    if remaining <= 0:
        logger.info("All %d rounds were already completed", cfg.num_rounds)
        return
    wait_for_nodes(grid, cfg)
    legacy = LegacyContext(
        context=context, config=ServerConfig(num_rounds=remaining), strategy=strategy
    )
    get_method(mode.workflow)(cfg)(grid, legacy)
