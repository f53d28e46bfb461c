"""``ferry diff REF V1 V2``: rows added, removed and changed between two versions, by key.

DuckDB joins the two versions' Parquet files on the primary key, so tables larger than
memory are compared with bounded memory (DuckDB spills to disk; wide rows are compared by
digest, ``changes.compared``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dataferry.errors import StoreError
from dataferry.store.changes import compared, touched_views
from dataferry.store.dataset import DatasetStore
from dataferry.store.duck import ident, spilling
from dataferry.store.files import json_value


@dataclass
class Diff:
    ref: str
    from_version: int
    to_version: int
    added: int = 0
    removed: int = 0
    changed: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"ref": self.ref, "from": self.from_version, "to": self.to_version,
                "added": self.added, "removed": self.removed, "changed": self.changed,
                "rows": self.rows}


def diff_versions(dataset: DatasetStore, v1: int, v2: int, *, limit: int = 100) -> Diff:
    """Compare versions ``v1`` and ``v2`` (either order) of a dataset with a primary key."""
    old, new = dataset.resolve(v1), dataset.resolve(v2)  # a sparse clone may lack one
    key = list(new.manifest.schema.get("primary_key") or [])
    if not key:
        raise StoreError(f"{dataset.ref} has no primary key, so rows cannot be matched "
                         "between versions; declare primary_key in the model")
    if key != list(old.manifest.schema.get("primary_key") or []):
        raise StoreError(f"{dataset.ref}: the primary key changed between versions {v1} and "
                         f"{v2}, so rows cannot be matched")
    old_cols = [c["name"] for c in old.manifest.schema["columns"]]
    new_cols = [c["name"] for c in new.manifest.schema["columns"]]
    held = dataset.held_columns(new, None)  # a clone of some columns compares those
    if held is not None:
        old_cols = [c for c in old_cols if c in held]
        new_cols = [c for c in new_cols if c in held]
    common = [c for c in new_cols if c in old_cols and c not in key]
    result = Diff(dataset.ref, v1, v2)
    with spilling("ferry-diff-") as db:
        # Only the rows of files that differ between the versions can differ.
        touched_views(dataset, old, new, db, [c for c in new_cols if c in old_cols])
        on = " and ".join(f"a.{ident(k)} is not distinct from b.{ident(k)}" for k in key)
        differs = " or ".join(
            f"a.{ident(c)} is distinct from b.{ident(c)}" for c in common
        ) or "false"
        a_key = f"a.{ident(key[0])}"
        b_key = f"b.{ident(key[0])}"
        select = compared(dataset, [old, new], common, key)  # wide rows: digests
        a, b = ("a", "b") if select is None else (f"(select {select} from a) a",
                                                  f"(select {select} from b) b")
        db.execute(
            f"""create temp table changes as
            select case when {a_key} is null and {b_key} is not null then 'added'
                        when {b_key} is null then 'removed' else 'changed' end as change,
                   {", ".join(f"coalesce(a.{ident(k)}, b.{ident(k)}) as {ident(k)}" for k in key)}
            from {a} full outer join {b} on {on}
            where ({a_key} is null and {b_key} is not null) or {b_key} is null
               or ({a_key} is not null and ({differs}))"""
        )
        counts = dict(db.execute("select change, count(*) from changes group by 1").fetchall())
        result.added = int(counts.get("added", 0))
        result.removed = int(counts.get("removed", 0))
        result.changed = int(counts.get("changed", 0))
        order = ", ".join(ident(k) for k in key)
        sample = db.execute(f"select * from changes order by change, {order} limit {int(limit)}")
        names = [d[0] for d in sample.description]
        for row in sample.fetchall():
            record = dict(zip(names, row, strict=True))
            change = record.pop("change")
            result.rows.append({"change": change, "key": {k: json_value(v) for k, v in record.items()}})
    return result
