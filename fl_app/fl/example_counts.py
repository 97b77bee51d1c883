"""Step 1 of an HE round: learn each sampled client's example count, once per client.

The HE strategy must announce the weight reference R — the sampled clients' total of
example counts — *before* the clients train, so it needs their counts when it
configures the round. Flower's legacy Strategy has no hook for asking clients
something before `configure_fit`, and `ClientProxy.get_properties` is one blocking
round trip per client; so the query goes straight through the Grid, as one batch of
GET_PROPERTIES messages for every client not asked before.
"""

from __future__ import annotations

from collections.abc import Callable
from logging import DEBUG

from flwr.app import Message
from flwr.common import GetPropertiesIns, MessageTypeLegacy, Scalar
from flwr.common.logger import log
from flwr.compat.common import recorddict_compat as compat
from flwr.server import Grid
from flwr.server.client_proxy import ClientProxy

from fl_app.fl.protocol import EXAMPLES_KEY

# (round, clients) -> {client id: the properties it answered}; clients that did not
# answer are missing.
PropertiesQuery = Callable[[int, list[ClientProxy]], dict[str, dict[str, Scalar]]]


def grid_properties_query(grid: Grid, timeout: float) -> PropertiesQuery:
    """Ask clients for their properties in one batch of messages through `grid`."""

    def query(rnd: int, proxies: list[ClientProxy]) -> dict[str, dict[str, Scalar]]:
        by_node = {proxy.node_id: proxy for proxy in proxies}
        messages = [
            Message(
                content=compat.getpropertiesins_to_recorddict(GetPropertiesIns(config={})),
                dst_node_id=proxy.node_id,
                message_type=MessageTypeLegacy.GET_PROPERTIES,
                group_id=str(rnd),
                ttl=timeout,
            )
            for proxy in proxies
        ]
        answers = {}
        for reply in grid.send_and_receive(messages):
            proxy = by_node.get(reply.metadata.src_node_id)
            if proxy is not None and not reply.has_error():
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
        self._counts: dict[str, int] = {}

    def get(self, cid: str) -> int | None:
        return self._counts.get(cid)

    def learn(self, rnd: int, proxies: list[ClientProxy]) -> None:
        """Ask the clients among `proxies` whose count is not known yet."""
        unknown = [proxy for proxy in proxies if proxy.cid not in self._counts]
        if not unknown:
            return
        learned = 0
        for cid, properties in self._query(rnd, unknown).items():
            examples = properties.get(EXAMPLES_KEY)
            if isinstance(examples, int) and 1 <= examples <= self.max_examples:
                self._counts[cid] = examples
                learned += 1
        log(DEBUG, "round %d: learned example counts of %d client(s)", rnd, learned)
