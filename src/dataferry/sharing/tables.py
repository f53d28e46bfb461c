"""How the model maps onto Delta Sharing: a share per consumer, a schema per producing
team, a table per dataset the consumer needs (named as the dataset).

A share is named ``<team>__<consumer>``: clients address a table as
``profile#share.schema.table`` and split on dots, so the dotted consumer ref cannot be the
name. Names may hold ``__`` themselves: a share name is looked up by trying each
``__`` as the separator (two consumers whose names collide that way get none).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from dataferry.engine.context import RunContext
from dataferry.model.spec import Need

_IDS = uuid.UUID("6f1b3c2e-5d0a-4e8b-9f47-1f2d3c4b5a69")


@dataclass(frozen=True)
class SharedTable:
    """One table of a share: the consumer's ``index``-th need."""

    share: str
    schema: str
    name: str
    ref: str
    index: int
    need: Need

    @property
    def id(self) -> str:
        return str(uuid.uuid5(_IDS, f"{self.share}/{self.ref}"))


def share_name(consumer: str) -> str:
    team, name = consumer.split(".", 1)
    return f"{team}__{name}"


def share_id(share: str) -> str:
    return str(uuid.uuid5(_IDS, share))


def consumer_of(context: RunContext, share: str) -> str | None:
    """The consumer ref a share name stands for, if the model has it."""
    parts = share.split("__")
    found = [ref for i in range(1, len(parts))
             if (ref := f"{'__'.join(parts[:i])}.{'__'.join(parts[i:])}")
             in context.index.consumers]
    return found[0] if len(found) == 1 else None


def tables(context: RunContext, consumer: str) -> list[SharedTable]:
    """The consumer's tables, by schema then name (a dataset needed twice counts once)."""
    _, _, spec = context.index.consumers[consumer]
    share = share_name(consumer)
    found: dict[str, SharedTable] = {}
    for index, need in enumerate(spec.datasets):
        team, name = need.ref.split(".", 1)
        found.setdefault(need.ref, SharedTable(share, team, name, need.ref, index, need))
    return sorted(found.values(), key=lambda t: (t.schema, t.name))
