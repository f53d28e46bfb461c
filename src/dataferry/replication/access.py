"""Who may clone a dataset from a server with a model.

Replication copies a dataset whole: every column, every row, every version. So only
those the applied model lets read it whole may clone it: admins, members of the owning
team, and members of a team whose consumer's need takes it whole (no ``columns``,
``where`` or ``mask``; ``authz.row_accesses`` decides what each need delivers). Anyone
else gets 403 with the reason. A store served with ``--anonymous`` skips this: its
owner chose to serve what it holds to anyone.
"""

from __future__ import annotations

from dataferry.model.graph import ModelIndex
from dataferry.server import authz
from dataferry.server.errors import Forbidden, NotFound
from dataferry.server.principal import Principal


def clone_grant(index: ModelIndex, principal: Principal, ref: str) -> str:
    """Why ``principal`` may clone ``ref`` (for the audit log); ``Forbidden`` naming the
    reason when it may not, ``NotFound`` when the model has no such dataset."""
    entry = index.datasets.get(ref)
    if entry is None:
        raise NotFound(f"no dataset {ref!r} in the model")
    every = set(entry.spec.columns)
    partial = []
    for access in authz.row_accesses(index, principal, ref):
        if access.where is None and not access.mask and set(access.columns) == every:
            return access.reason
        partial.append(access.consumer or access.reason)
    why = (f"; the consumer{'s' if len(partial) > 1 else ''} of your team "
           f"({', '.join(partial)}) receive{'' if len(partial) > 1 else 's'} only part of it "
           "(columns, where or mask)") if partial else ""
    raise Forbidden(f"{principal.username} may not clone {ref}: a clone copies the whole "
                    f"dataset, so it is for admins, members of team {entry.team} and teams "
                    f"whose consumer takes it whole{why}")
