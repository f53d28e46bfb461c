"""Governance checks: zones, classifications, pii, approvals, deprecation, platforms."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path as FsPath

from dataferry.model.findings import Path, Report
from dataferry.model.graph import DatasetEntry, ModelIndex, Receipt
from dataferry.model.lint import where_columns
from dataferry.model.reads import ColumnsRead, columns_read, transformer_sql
from dataferry.model.spec import Ecosystem, Transformer


def check_policy(eco: Ecosystem, index: ModelIndex, report: Report,
                 root: FsPath | None = None, *, sql: bool = True) -> None:
    """Report ``policy-violation``, ``not-approved`` and ``deprecated-dataset`` findings.

    ``root`` is the model's directory, where a transformer's ``sql_file`` is read from
    (without it, or when the file is missing, the transformer counts as reading every
    column of its inputs). ``sql=False`` leaves out the checks that parse SQL (what a
    consumer's ``where:`` filters on, which columns a transformer reads);
    ``check_policy_sql`` runs them for some consumers and transformers.
    """
    for receipt in index.receipts():
        entry = index.datasets.get(receipt.ref)
        if entry is None or receipt.team not in eco.teams:
            continue
        if not approved(entry, receipt.team):
            allowed = entry.spec.allowed_consumers or []
            report.add(
                "not-approved",
                f"{receipt.label} receives {receipt.ref}, but its owners allow only "
                f"{', '.join(allowed) or 'no other team'} (allowed_consumers); ask team "
                f"{entry.team} to add {receipt.team}",
                receipt.path,
            )
        deprecated = entry.spec.deprecated
        if deprecated:
            why = f": {deprecated}" if isinstance(deprecated, str) else ""
            report.add("deprecated-dataset", f"{receipt.label} receives {receipt.ref}, which "
                       f"is deprecated{why}", receipt.path, severity="warning")
        if receipt.need is not None:
            _check_need_zones(eco, index, receipt, report)
            if sql:
                _check_need_where(eco, index, receipt, report)
        elif sql:
            _check_input_zones(eco, index, receipt, report, root)
    _check_platforms(eco, index, report)


def check_policy_sql(eco: Ecosystem, index: ModelIndex, report: Report, root: FsPath | None,
                     refs: Collection[str]) -> None:
    """The policy checks that ``check_policy(sql=False)`` left out, for the consumers and
    transformers ``refs`` ("team.name") only."""
    for receipt in index.receipts():
        if f"{receipt.team}.{receipt.entity}" not in refs:
            continue
        if receipt.ref not in index.datasets or receipt.team not in eco.teams:
            continue
        if receipt.need is not None:
            _check_need_where(eco, index, receipt, report)
        else:
            _check_input_zones(eco, index, receipt, report, root)


def approved(entry: DatasetEntry, team: str) -> bool:
    """Whether team ``team`` may receive the dataset (its ``allowed_consumers``; the
    owning team always may)."""
    allowed = entry.spec.allowed_consumers
    return allowed is None or team == entry.team or team in allowed


def required_masks(eco: Ecosystem, entry: DatasetEntry, team: str) -> dict[str, str]:
    """The columns of a dataset that team ``team`` may receive only masked, each with
    why (the zone rule), for the finding to say.

    A column crossing zones must have a classification the producing zone exports, and
    a pii column needs a zone with ``export_pii``. Consumers' needs and transformers'
    inputs are held to this one rule: the check reports what is not masked, and the
    transform engine masks these columns whatever the model declares.
    """
    home = eco.teams[entry.team].zone
    away = eco.teams[team].zone
    zone = eco.zones.get(home)
    if home == away or zone is None:
        return {}
    exported = ", ".join(zone.export_classifications) or "nothing"
    out: dict[str, str] = {}
    for name, spec in entry.spec.columns.items():
        level = spec.classification or entry.spec.classification
        if level not in zone.export_classifications:
            out[name] = (f"classified {level}; zone {home} exports only {exported} to "
                         "other zones")
        elif spec.pii and not zone.export_pii:
            out[name] = f"pii; zone {home} does not export pii to other zones"
    return out


def transformer_masks(index: ModelIndex, entry: DatasetEntry, team: str) -> dict[str, str]:
    """The columns of a dataset that a transformer of team ``team`` may read only masked,
    each with why: what ``required_masks`` says (the zone rule), and every column that the
    team's own consumers of the dataset receive only masked.

    A team's consumer needs are what it declared it may see of another team's dataset:
    the server shows its members the rows as those needs deliver them. A transformer of
    the team reading such a column raw would publish what none of its consumers receives
    (and its members would read it raw in the transformer's output). A column some
    consumer of the team receives unmasked is not held back; the owning team's own
    transformers read everything.
    """
    out = required_masks(index.ecosystem, entry, team)
    if team == entry.team:
        return out
    receiving: dict[str, list[tuple[str, bool]]] = {}
    for receipt in index.receivers.get(entry.ref, []):
        if receipt.team != team or receipt.need is None:
            continue
        masked = set(receipt.need.mask)
        for column in index.delivered_columns(receipt):
            receiving.setdefault(column, []).append((receipt.entity, column in masked))
    for column, needs in receiving.items():
        if column not in out and all(is_masked for _, is_masked in needs):
            consumers = ", ".join(sorted({f"{team}.{name}" for name, _ in needs}))
            out[column] = (f"which the team's consumers receive only masked ({consumers}); "
                           "a transformer may not see more of it than they do")
    return out


def masked_input_columns(index: ModelIndex, ref: str, input_ref: str) -> set[str]:
    """The columns of input ``input_ref`` that transformer ``ref`` gets masked: what its
    team may receive only masked (``transformer_masks``) and what its ``mask:`` declares."""
    entry = index.datasets[input_ref]
    spec = index.datasets[ref].spec
    declared = spec.mask.get(input_ref, []) if isinstance(spec, Transformer) else []
    required = transformer_masks(index, entry, index.datasets[ref].team)
    return {c for c in [*declared, *required] if c in entry.spec.columns}


def _check_need_zones(eco: Ecosystem, index: ModelIndex, receipt: Receipt,
                      report: Report) -> None:
    entry = index.datasets[receipt.ref]
    required = required_masks(eco, entry, receipt.team)
    if not required:
        return
    away = eco.teams[receipt.team].zone
    masked = set(receipt.need.mask) if receipt.need is not None else set()
    for column in index.delivered_columns(receipt):
        if column in required and column not in masked:
            report.add(
                "policy-violation",
                f"{receipt.label} (zone {away}) receives {receipt.ref} column {column!r}, "
                f"{required[column]} (mask it, leave it out with columns:, or change the "
                "zone's policy)",
                receipt.path,
            )


def _check_need_where(eco: Ecosystem, index: ModelIndex, receipt: Receipt,
                      report: Report) -> None:
    where = receipt.need.where if receipt.need is not None else None
    if where is None:
        return
    entry = index.datasets[receipt.ref]
    required = required_masks(eco, entry, receipt.team)
    if not required:
        return
    away = eco.teams[receipt.team].zone
    filtered = where_columns(where)
    for column in filtered if isinstance(filtered, tuple) else ():
        if column in required:
            # A filter runs on the raw values: which rows arrive would tell them (a
            # binary search with 'email < ...'), masked or left out or not.
            report.add(
                "policy-violation",
                f"{receipt.label} (zone {away}) filters {receipt.ref} on column {column!r} "
                f"(where: {where}), {required[column]}; a filter on a column it may "
                "receive only masked reveals its values: filter on other columns",
                (*receipt.path[:-1], "where"),
            )


def _check_input_zones(eco: Ecosystem, index: ModelIndex, receipt: Receipt, report: Report,
                       root: FsPath | None) -> None:
    """A transformer may read a column it would have to mask as a consumer, or that its
    team's consumers receive only masked, only through a declared ``mask:`` (the engine
    then hands it the keyed hash)."""
    entry = index.datasets[receipt.ref]
    required = transformer_masks(index, entry, receipt.team)
    if not required:
        return
    transformer = eco.teams[receipt.team].transformers[receipt.entity]
    masked = set(transformer.mask.get(receipt.ref, []))
    if not set(required) - masked:
        return
    read = _columns_read(index, receipt.team, transformer, root)
    away = eco.teams[receipt.team].zone
    why = f" ({read.why_all})" if read.why_all else ""
    for column in sorted(read.of(receipt.ref) - masked, key=list(entry.spec.columns).index):
        if column not in required:
            continue
        report.add(
            "policy-violation",
            f"{receipt.label} (zone {away}) reads column {column!r} of input {receipt.ref}"
            f"{why}, {required[column]}; declare it masked on the transformer "
            f"(mask: {{{receipt.ref}: [{column}]}}) to get a keyed hash instead, or stop "
            "reading it",
            receipt.path,
        )


def _columns_read(index: ModelIndex, team: str, transformer: Transformer,
                  root: FsPath | None) -> ColumnsRead:
    inputs = {ref: index.datasets[ref].spec for ref in transformer.inputs
              if ref in index.datasets}
    sql = transformer.sql
    if sql is None and root is not None:
        sql = transformer_sql(transformer, root / "teams" / team)
    return columns_read(transformer, inputs, sql)


def _check_platforms(eco: Ecosystem, index: ModelIndex, report: Report) -> None:
    """A job may only run on a platform its team's zone allows (zones.<z>.platforms)."""

    def check(team: str, platform: str | None, path: Path, what: str) -> None:
        zone = eco.zones.get(eco.teams[team].zone)
        if zone is None or zone.platforms is None or platform is None:
            return
        if platform not in zone.platforms:
            report.add("policy-violation",
                       f"{what} would run on platform {platform!r}, which zone "
                       f"{eco.teams[team].zone} does not allow ({', '.join(zone.platforms)})",
                       path)

    default = eco.defaults.platform
    for entry in index.datasets.values():
        platform = entry.spec.platform
        network = getattr(entry.source, "network", None)
        if platform is None and network is not None:
            platform = index.networks.get(network)
        check(entry.team, platform or default, (*entry.path, "platform"), entry.ref)
    for ref, (team, _name, consumer) in index.consumers.items():
        platform = consumer.platform
        if platform is None and consumer.sink.network is not None:
            platform = index.networks.get(consumer.sink.network)
        check(team, platform or default, ("teams", team, "consumers", _name),
              f"consumer {ref}")
