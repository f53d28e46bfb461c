"""Governance checks: zones, classifications, pii, approvals, deprecation, platforms."""

from __future__ import annotations

from dataferry.model.findings import Path, Report
from dataferry.model.graph import ModelIndex, Receipt
from dataferry.model.spec import Ecosystem


def check_policy(eco: Ecosystem, index: ModelIndex, report: Report) -> None:
    """Report ``policy-violation``, ``not-approved`` and ``deprecated-dataset`` findings."""
    for receipt in index.receipts():
        entry = index.datasets.get(receipt.ref)
        if entry is None or receipt.team not in eco.teams:
            continue
        allowed = entry.spec.allowed_consumers
        if allowed is not None and receipt.team != entry.team and receipt.team not in allowed:
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
        _check_zones(eco, index, receipt, report)
    _check_platforms(eco, index, report)


def _check_zones(eco: Ecosystem, index: ModelIndex, receipt: Receipt, report: Report) -> None:
    entry = index.datasets[receipt.ref]
    home = eco.teams[entry.team].zone
    away = eco.teams[receipt.team].zone
    zone = eco.zones.get(home)
    if home == away or zone is None:
        return
    masked = set(receipt.need.mask) if receipt.need is not None else set()
    for column in index.delivered_columns(receipt):
        if column in masked:
            continue
        spec = entry.spec.columns[column]
        level = spec.classification or entry.spec.classification
        if level not in zone.export_classifications:
            report.add(
                "policy-violation",
                f"{receipt.label} (zone {away}) receives {receipt.ref} column {column!r}, "
                f"classified {level}; zone {home} exports only "
                f"{', '.join(zone.export_classifications) or 'nothing'} to other zones "
                "(mask it, leave it out with columns:, or change the zone's policy)",
                receipt.path,
            )
        elif spec.pii and not zone.export_pii:
            report.add(
                "policy-violation",
                f"{receipt.label} (zone {away}) receives pii column {column!r} of "
                f"{receipt.ref}; zone {home} does not export pii (mask it or leave it out)",
                receipt.path,
            )


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
