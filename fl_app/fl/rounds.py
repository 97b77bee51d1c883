"""The round loop: wait for enough nodes, then Flower's workflow, whose fit step is the
privacy mode's (Flower's default, or SecAgg+) preceded by the example-count query."""

from __future__ import annotations

import logging
import time
from typing import Any

from flwr.app import Context
from flwr.server import Grid, LegacyContext, ServerConfig
from flwr.server.workflow import DefaultWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, Key
from flwr.server.workflow.default_workflows import default_fit_workflow

from fl_app.config.schema import AppConfig
from fl_app.fl.modes import Mode
from fl_app.fl.strategy import FederatedStrategy

logger = logging.getLogger(__name__)


def wait_for_nodes(grid: Grid, cfg: AppConfig) -> None:
    """Fail clearly, instead of waiting forever, when too few nodes connect."""
    needed = cfg.strategy.min_available_clients
    timeout = cfg.federation.node_wait_timeout
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


def counted_fit(strategy: FederatedStrategy, fit: Any) -> Any:
    """A round's fit step that first asks every connected client whose example count is
    not known yet for it (one batch of messages; fl_app.fl.example_counts): the counts
    weigh the round's results, and under HE they are the weight reference R."""

    def step(grid: Grid, context: LegacyContext) -> None:
        server_round = int(context.state.config_records[MAIN_CONFIGS_RECORD][Key.CURRENT_ROUND])
        proxies = list(context.client_manager.all().values())
        strategy.counts.learn(server_round + strategy.round_offset, proxies)
        if strategy.statistics is not None:  # fixed after the first query (fl.statistics)
            strategy.statistics.close()
        fit(grid, context)

    return step


def run_rounds(
    cfg: AppConfig,
    mode: Mode,
    grid: Grid,
    context: Context,
    strategy: FederatedStrategy,
    remaining: int,
) -> None:
    """The `remaining` rounds of the run with the mode's fit step (none: say so)."""
    if remaining <= 0:
        logger.info("All %d rounds were already completed", cfg.num_rounds)
        return
    wait_for_nodes(grid, cfg)
    fit = mode.fit_workflow(cfg) or default_fit_workflow
    if strategy.counts is not None:
        fit = counted_fit(strategy, fit)
    legacy = LegacyContext(
        context=context, config=ServerConfig(num_rounds=remaining), strategy=strategy
    )
    DefaultWorkflow(fit_workflow=fit)(grid, legacy)
