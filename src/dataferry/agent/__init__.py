"""The gateway agent (docs/agents.md): jobs of private networks run by an agent inside them.

Hub side (in ``ferry serve``, ``ferry run`` and ``ferry up``, sharing the metadata DB):

- ``registry``: one-time enrollment tokens and enrolled agents (public key, credential
  hash, last contact, revocation);
- ``queue``: the agent jobs of each network, handed out with leases that expire;
- ``uploads``: files an agent uploads, hashed as they arrive, kept apart until published;
- ``hub_api``: the HTTP routes (``/api/v1/agents`` for admins, ``/api/v1/agent/*`` for
  agents);
- ``dispatch``: what the runner calls for a job of a network: queue it, wait, publish.

Agent side (``ferry agent``): ``identity`` (the Ed25519 key and the credential in
``--home``), ``client`` (the HTTP calls, outbound only), ``runtime`` (the poll loop) and
``work`` (running one job: read the source, write and upload files; check a connection).
"""
