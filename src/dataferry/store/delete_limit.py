"""The safety valve for snapshots that would wipe what is downstream.

A replace (an ingest snapshot, a transformer's output, ``ferry publish``) is the whole
new truth: an empty or truncated input (a header-only CSV, a source table caught in a
reload, a transformer whose join lost its rows) would otherwise publish as a version that
deletes most rows, and every consumer would deliver that. So a replace that leaves fewer
than ``1 - max_delete_ratio`` of the previous version's rows is refused with the numbers,
unless the caller allows it (``--allow-delete``). Rows are counted, not compared by key:
the valve is for versions that shrink, not for ones that change.

A first version is never refused (there is nothing to delete), nor is a merge or an
append (they remove no row they were not given).
"""

from __future__ import annotations

from dataferry.errors import StoreError

DEFAULT_MAX_DELETE_RATIO = 0.5


class DeleteRefused(StoreError):
    """A replace would remove more of the previous rows than the dataset allows."""


def check_delete_ratio(dataset: str, before: int, after: int, limit: float | None) -> None:
    """Raise ``DeleteRefused`` if going from ``before`` to ``after`` rows removes more than
    ``limit`` (a share of ``before``; None: no limit)."""
    if limit is None or before <= 0 or after >= before:
        return
    ratio = (before - after) / before
    if ratio <= limit:
        return
    message = (f"{dataset}: this version would remove {before - after} of {before} rows "
               f"({ratio:.0%}: {before} rows before, {after} after), more than its "
               f"max_delete_ratio of {limit:g} allows; if the source really lost those rows, "
               "run again with --allow-delete (or raise max_delete_ratio for the dataset); "
               "nothing was published")
    raise DeleteRefused(message, public=True)
