"""What a gateway agent may clone from the hub (replication, ``/api/v1/replication``).

An agent delivers to the sinks of its network, from its own verified clone of each
dataset they need: so it may clone exactly the datasets some consumer whose sink is in
its network needs, and nothing else.
"""

from __future__ import annotations

from dataferry.model.graph import ModelIndex
from dataferry.server.errors import Forbidden, NotFound


def agent_grant(index: ModelIndex, network: str, ref: str) -> str:
    """Why an agent of ``network`` may clone ``ref``; ``Forbidden`` when it may not."""
    if ref not in index.datasets:
        raise NotFound(f"no dataset {ref!r} in the model")
    for consumer_ref, (_, _, consumer) in sorted(index.consumers.items()):
        if consumer.sink.network == network and any(n.ref == ref for n in consumer.datasets):
            return f"consumer {consumer_ref} in network {network} needs it"
    raise Forbidden(f"an agent of network {network} may clone only what the sinks of its "
                    f"network need; no consumer there needs {ref}")
