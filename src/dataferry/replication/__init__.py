"""Replication between peers (docs/replication.md): any node that holds a store serves
it, and a reader trusts no peer, only signatures and hashes.

    serve       the HTTP endpoints under /api/v1/replication/<team>.<dataset>/
    access      who may clone a dataset from a server with a model (and the audit)
    paths       what a file path in the protocol may look like
    peer        the client side of the protocol: one peer, its answers as bytes
    sync        clone/pull one dataset: verify every byte, then make a version visible
    origin      where a cloned dataset came from (``_sig/origin.json``)
"""
