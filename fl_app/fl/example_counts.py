"""Each client's example count, asked once per client before its first round.

Under HE the server must announce the weight reference R — the sampled clients' total
of example counts — *before* the clients train; in every mode a result or evaluation
weighing more than its client announced is refused. Flower's legacy Strategy has no
hook for asking clients something before `configure_fit`, and
`ClientProxy.get_properties` is one blocking round trip per client; so the round's fit
step (fl_app.fl.rounds.counted_fit) sends one batch of GET_PROPERTIES messages through
the Grid to every connected client not asked before.
"""

from __future__ import annotations

from collections.abc import Callable
from logging import DEBUG, WARNING
from typing import Any

from flwr.app import Message
from flwr.common import GetPropertiesIns, MessageTypeLegacy, Scalar
from flwr.common.logger import log
from flwr.compat.common import recorddict_compat as compat
from flwr.server import Grid
from flwr.server.client_proxy import ClientProxy

from fl_app.fl.protocol import EVAL_EXAMPLES_KEY, EXAMPLES_KEY

# (round, clients, the query's config) -> {client id: the properties it answered, or why
# its reply is an error}; clients that did not answer at all are missing.
PropertiesQuery = Callable[
    [int, list[ClientProxy], dict[str, Scalar]], dict[str, dict[str, Scalar] | str]
]


def grid_properties_query(grid: Grid, timeout: float) -> PropertiesQuery:
    """Ask clients for their properties in one batch of messages through `grid`."""

    def query(
        rnd: int, proxies: list[ClientProxy], config: dict[str, Scalar]
    ) -> dict[str, dict[str, Scalar] | str]:
        by_node = {proxy.node_id: proxy for proxy in proxies}
        ins = GetPropertiesIns(config=dict(config))
        messages = [
            Message(
                content=compat.getpropertiesins_to_recorddict(ins),
                dst_node_id=proxy.node_id,
                message_type=MessageTypeLegacy.GET_PROPERTIES,
                group_id=str(rnd),
                ttl=timeout,
            )
            for proxy in proxies
        ]
        answers: dict[str, dict[str, Scalar] | str] = {}
        for reply in grid.send_and_receive(messages):
            proxy = by_node.get(reply.metadata.src_node_id)
            if proxy is None:
                continue
            if reply.has_error():
                error = reply.error
                answers[proxy.cid] = f"its reply is an error (code {error.code}): {error.reason}"
            else:
                res = compat.recorddict_to_getpropertiesres(reply.content)
                answers[proxy.cid] = res.properties
        return answers

    return query


class ExampleCounts:
    """Example counts by client id: asked once per client, each in 1..max_examples, and
    never changed by what a client reports later."""

    def __init__(self, query: PropertiesQuery, *, max_examples: int) -> None:
        self._query = query
        self.max_examples = max_examples
        self.statistics: Any = None  # fl_app.fl.statistics.ServerStatistics: answers add
        self._counts: dict[str, int] = {}
        self._eval_counts: dict[str, int] = {}
        self._refused: dict[str, str] = {}  # why a client's count is not known

    def get(self, cid: str) -> int | None:
        return self._counts.get(cid)

    def eval_limit(self, cid: str) -> int | None:
        """The test-split size the client announced: the most its evaluation may weigh."""
        return self._eval_counts.get(cid)

    def why_unknown(self, cid: str) -> str:
        """Why client `cid` has no count: what it answered, or that it did not answer."""
        return self._refused.get(
            cid, "it did not answer the example-count query (or connected after it)"
        )

    def known(self, rnd: int, instructions: list[tuple[ClientProxy, Any]]) -> list:
        """The instructions of clients whose count is known (fl_app.fl.rounds asked them
        before the round); each one left out is logged with why."""
        kept = []
        for proxy, ins in instructions:
            if self.get(proxy.cid) is None:
                log(WARNING, "round %d: client %s left out: %s",
                    rnd, proxy.cid, self.why_unknown(proxy.cid))  # fmt: skip
            else:
                kept.append((proxy, ins))
        return kept

    def mismatch(self, cid: str, num_examples: int) -> str | None:
        """Why a result's `num_examples` cannot be taken (it must be the announced one)."""
        announced = self.get(cid)
        if num_examples != announced:
            return (
                f"num_examples={num_examples} differs from the {announced} it announced "
                "(the count this round's weights were computed from)"
            )
        return None

    def learn(self, rnd: int, proxies: list[ClientProxy]) -> None:
        """Ask the clients among `proxies` whose count is not known yet."""
        unknown = [proxy for proxy in proxies if proxy.cid not in self._counts]
        if not unknown:
            return
        learned, statistics = 0, self.statistics
        request = statistics.request() if statistics is not None else {}
        for cid, answer in self._query(rnd, unknown, request).items():
            reason = self._learn_one(cid, answer)
            if reason is None:
                learned += 1
                if statistics is not None:
                    statistics.take(cid, answer, self._counts[cid])
            else:
                self._refused[cid] = reason
        log(DEBUG, "round %d: learned example counts of %d client(s)", rnd, learned)

    def _learn_one(self, cid: str, answer: dict[str, Scalar] | str) -> str | None:
        """Remember one client's counts; or why they cannot be used."""
        if isinstance(answer, str):
            return answer
        examples, evaluation = answer.get(EXAMPLES_KEY), answer.get(EVAL_EXAMPLES_KEY)
        if not isinstance(examples, int) or isinstance(examples, bool):
            return f"it answered {EXAMPLES_KEY}={examples!r}, allowed an integer"
        if not 1 <= examples <= self.max_examples:
            return (
                f"it reported {examples} examples, allowed 1..{self.max_examples} (he.max_examples)"
            )
        if not isinstance(evaluation, int) or not 1 <= evaluation <= self.max_examples:
            return f"it answered {EVAL_EXAMPLES_KEY}={evaluation!r}, allowed 1..he.max_examples"
        self._counts[cid] = examples
        self._eval_counts[cid] = evaluation
        self._refused.pop(cid, None)
        return None
