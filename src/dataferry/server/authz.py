"""What a principal may see and do, decided from the applied model (SERVER.md).

The rules, in the order they are checked:

- **Catalog metadata** (names, schemas, owners, lineage) is visible to every logged-in
  principal: the catalog is how people find data they do not have yet.
- **Rows** of a dataset: an admin, or a member of the team that owns the dataset, sees
  every column unfiltered and unmasked. A member of a team with a *consumer* that
  receives the dataset sees exactly what that consumer's need delivers: its columns,
  its ``where`` filter, its ``mask``. A transformer reading a dataset is not a consumer
  and grants nothing (the rule names consumers only). Viewers never see rows.
- **Triggering a job**: an admin, or a member of the team that owns the job (the
  dataset's team for ``ingest:``/``transform:``, the consumer's team for ``deliver:``).
- **A run's error detail** (the full error text, which may quote rows): an admin, or a
  member of the team that owns the job; for a delivery also the team that owns the
  dataset delivered. Everyone else reads the run's public summary only. A failed
  check's example rows follow the **rows** rule: shown as the caller's grant shows
  rows (its columns, masked), not at all under a grant with a ``where`` filter.

Every function here fails closed: an unknown dataset, consumer or job, or a need the
dataset's ``allowed_consumers`` does not approve, yields None/False, never an
exception, so a route cannot leak data through an error path. Pass the index of the
*applied* model: a consumer merely proposed in a branch grants nothing.

API token scopes (``Principal.scopes``) are not interpreted here: their vocabulary
belongs to ``auth/``, which checks them before calling these functions.
"""

from __future__ import annotations

from dataclasses import dataclass

from dataferry.broker.graph import Job
from dataferry.model.graph import ModelIndex, Receipt
from dataferry.server.principal import Principal


@dataclass(frozen=True)
class RowAccess:
    """Which rows and columns of one dataset a principal may read, and why.

    ``columns`` in the order the grant delivers them; ``where`` a DuckDB filter taken
    from the model (never from a request); ``mask`` the columns replaced by the keyed
    hash deliveries use. ``consumer`` names the consumer whose need grants the access
    (None for admins and owners).
    """

    columns: tuple[str, ...]
    where: str | None
    mask: tuple[str, ...]
    reason: str
    consumer: str | None = None

    @property
    def unrestricted(self) -> bool:
        return self.where is None and not self.mask and self.consumer is None


def can_see_metadata(principal: Principal | None) -> bool:
    """Whether the catalog (names, schemas, owners, lineage) is visible: to anyone logged in."""
    return principal is not None


def row_accesses(index: ModelIndex, principal: Principal, ref: str) -> list[RowAccess]:
    """Every grant ``principal`` has on the rows of ``ref``, the widest first (see
    ``row_access``); empty when it may not see rows at all."""
    entry = index.datasets.get(ref)
    if entry is None:
        return []
    every = tuple(entry.spec.columns)
    if principal.is_admin:
        return [RowAccess(every, None, (), "admin")]
    if principal.role != "member":
        return []
    if entry.team in principal.teams:
        return [RowAccess(every, None, (), f"member of team {entry.team} (owner)")]
    allowed = entry.spec.allowed_consumers
    grants = [
        _need_access(index, receipt)
        for receipt in index.receivers.get(ref, [])
        if receipt.need is not None and receipt.team in principal.teams
        and (allowed is None or receipt.team in allowed)
    ]
    return sorted(grants, key=_widest_first)


def row_access(index: ModelIndex, principal: Principal, ref: str) -> RowAccess | None:
    """The one grant the API and UI use for ``ref``'s rows, or None: no rows at all.

    When the principal's teams have several needs of the dataset, the grant is the need
    that delivers the most columns (then: one without a filter, then the fewest masked
    columns, then the consumer's name, so the choice is stable). Grants are never
    combined: a union of one need's columns with another need's filter would show rows
    and columns together that no consumer receives. ``row_accesses`` lists them all.
    """
    grants = row_accesses(index, principal, ref)
    return grants[0] if grants else None


def _need_access(index: ModelIndex, receipt: Receipt) -> RowAccess:
    assert receipt.need is not None
    columns = index.delivered_columns(receipt)
    masked = set(receipt.need.mask)
    consumer = f"{receipt.team}.{receipt.entity}"
    return RowAccess(
        tuple(columns), receipt.need.where, tuple(c for c in columns if c in masked),
        f"consumer {consumer} receives it", consumer,
    )


def _widest_first(access: RowAccess) -> tuple[int, bool, int, str]:
    return (-len(access.columns), access.where is not None, len(access.mask),
            access.consumer or "")


def job_team(index: ModelIndex, job: Job | str) -> str | None:
    """The team that owns a job of the model's graph, or None if the model has no such job.

    ``ingest:<ref>`` and ``transform:<ref>`` belong to the dataset's team (and the kind
    must match the dataset), ``deliver:<consumer>:<table>`` to the consumer's team (and
    the consumer must deliver to that table).
    """
    job_id = job.id if isinstance(job, Job) else job
    kind, _, rest = job_id.partition(":")
    if kind in ("ingest", "transform"):
        entry = index.datasets.get(rest)
        if entry is None or entry.is_transformer != (kind == "transform"):
            return None
        return entry.team
    if kind == "deliver":
        consumer_ref, _, table = rest.partition(":")
        found = index.consumers.get(consumer_ref)
        if found is None or not table:
            return None
        team, _, consumer = found
        tables = {need.table or need.ref.partition(".")[2] for need in consumer.datasets}
        return team if table in tables else None
    return None


def can_trigger(index: ModelIndex, principal: Principal, job: Job | str) -> bool:
    """Whether ``principal`` may start ``job`` (``POST /runs``): an admin or a member of
    the job's team; False for a job the model does not have, whoever asks."""
    team = job_team(index, job)
    if team is None:
        return False
    if principal.is_admin:
        return True
    return principal.role == "member" and team in principal.teams


def can_see_run_detail(index: ModelIndex, principal: Principal, job_id: str) -> bool:
    """Whether ``principal`` may read the detail of a run of ``job_id`` (its full error
    text and log lines, which may quote rows): those with unrestricted rows of what the
    job handled. Admins; members of the job's team (``job_team``); for
    ``deliver:<consumer>:<table>`` also members of the delivered dataset's team (the
    sink held only what that consumer receives). False for a job the model lacks, but
    for admins, who may read every row anyway.
    """
    if principal.is_admin:
        return True
    if principal.role != "member":
        return False
    team = job_team(index, job_id)
    if team is None:
        return False
    if team in principal.teams:
        return True
    kind, _, rest = job_id.partition(":")
    if kind != "deliver":
        return False
    consumer_ref, _, table = rest.partition(":")
    _, _, consumer = index.consumers[consumer_ref]
    for need in consumer.datasets:
        entry = index.datasets.get(need.ref)
        if (need.table or need.ref.partition(".")[2]) == table and entry is not None:
            return entry.team in principal.teams
    return False
