"""What a gateway agent may clone from the hub (replication, ``/api/v1/replication``).

An agent delivers to the sinks of its network from its own verified clone of each
dataset they need, and runs the SQL transformers placed on its network's platforms from
clones of their inputs: so it may clone exactly the datasets some consumer whose sink is
in its network needs without ``mask:`` (a masked need's rows are derived on the hub and the
agent never holds the dataset: ``derived``), and the inputs of those transformers (SQL,
inputs unmasked: an agent never runs the others, ``model.agentcheck``), and nothing else.
"""

from __future__ import annotations

from dataferry.model.agentcheck import agent_refusal, transformers_in
from dataferry.model.graph import ModelIndex
from dataferry.model.spec import Transformer
from dataferry.server.errors import Forbidden, NotFound


def agent_grant(index: ModelIndex, network: str, ref: str) -> str:
    """Why an agent of ``network`` may clone ``ref``; ``Forbidden`` when it may not."""
    if ref not in index.datasets:
        raise NotFound(f"no dataset {ref!r} in the model")
    for consumer_ref, (_, _, consumer) in sorted(index.consumers.items()):
        if consumer.sink.network == network and any(
                n.ref == ref and not n.mask for n in consumer.datasets):
            return f"consumer {consumer_ref} in network {network} needs it"
    for transformer in transformers_in(index, network):
        spec = index.datasets[transformer].spec
        assert isinstance(spec, Transformer)
        if ref in spec.inputs and agent_refusal(index, transformer, network) is None:
            return f"transformer {transformer} runs in network {network} and reads it"
    raise Forbidden(f"an agent of network {network} may clone only what the sinks (unmasked) "
                    f"and transformers of its network read; none there reads {ref}")
