"""``ferry check --connect``: compare the model with the live sources and sinks.

Every source dataset's live columns are compared with the declared ones (the same rules
as an ingest, ``connectors.drift``): a missing column or an incompatible type is a
``schema-mismatch`` error; a source or sink that cannot be reached is an ``unreachable``
warning (CI often cannot reach production, so it does not fail the check). A source or
sink in a private network is checked by an agent of that network when one is enrolled
(``dataferry.agent.check``); otherwise it is reported as not checked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dataferry.errors import FerryError, SourceError
from dataferry.model.graph import DatasetEntry, ModelIndex
from dataferry.model.load import LoadedModel

if TYPE_CHECKING:
    from dataferry.connectors.base import SourceColumn, SourceConnector
    from dataferry.connectors.changes import ChangeProblem
    from dataferry.model.findings import Report
    from dataferry.model.spec import SourceDataset


def check_connections(loaded: LoadedModel) -> None:
    """Add ``unreachable`` and ``schema-mismatch`` findings to ``loaded.report``."""
    from dataferry.connectors.registry import sink_class, source_class

    assert loaded.ecosystem is not None
    index = ModelIndex(loaded.ecosystem)
    report = loaded.report
    remote: list[str] = []
    for ref, entry in index.datasets.items():
        if entry.is_transformer or entry.source is None:
            continue
        where = (*entry.path,)
        network = getattr(entry.source, "network", None)
        if network is not None:
            remote.append(ref)
            continue
        try:
            connector = source_class(entry.source.kind)(
                f"{entry.team}.{entry.source_name}", entry.source, loaded.root)
            try:
                columns = connector.columns(ref, entry.dataset)
            finally:
                connector.close()
        except FerryError as exc:
            if isinstance(exc, SourceError) and not exc.transient and _is_schema(exc):
                report.add("schema-mismatch", f"{ref}: {exc}", where)
            else:
                report.add("unreachable", f"{ref}: cannot reach its source: {exc}", where,
                           severity="warning")
            continue
        for trouble in _change_problems(connector, ref, entry, loaded):
            report.add(trouble.code, trouble.message, where,
                       severity=trouble.severity)  # type: ignore[arg-type]
        add_comparison(report, ref, entry.dataset, where, columns)
    if remote:
        from dataferry.agent.check import check_through_agents

        check_through_agents(loaded, index, remote)
    remote_sinks: list[str] = []
    for consumer_ref, (team, name, consumer) in index.consumers.items():
        where = ("teams", team, "consumers", name, "sink")
        if consumer.sink.kind == "share":
            continue  # served from the store by Delta Sharing: nothing to reach
        if consumer.sink.network is not None:
            remote_sinks.append(consumer_ref)
            continue
        try:
            sink = sink_class(consumer.sink.kind)(consumer_ref, consumer.sink, loaded.root)
            try:
                for need in consumer.datasets:
                    sink.applied_version(need.ref, need.table or need.ref.partition(".")[2])
            finally:
                sink.close()
        except FerryError as exc:
            report.add("unreachable", f"consumer {consumer_ref}: cannot reach its sink: {exc}",
                       where, severity="warning")
    if remote_sinks:
        from dataferry.agent.check import check_sinks_through_agents

        check_sinks_through_agents(loaded, index, remote_sinks)


def _change_problems(connector: SourceConnector, ref: str, entry: DatasetEntry,
                     loaded: LoadedModel) -> list[ChangeProblem]:
    """What keeps a dataset that reads changes from doing so (none for other datasets)."""
    from dataferry.connectors.changes import ChangeProblem, ChecksChanges, reads_changes

    assert entry.source is not None
    if not reads_changes(entry.source.kind, entry.dataset) or \
            not isinstance(connector, ChecksChanges):
        return []
    try:
        return connector.change_problems(ref, entry.dataset,
                                         position=_head_position(loaded, ref))
    except FerryError as exc:
        return [ChangeProblem("unreachable", f"{ref}: cannot check its change capture: {exc}")]
    finally:
        connector.close()


def _head_position(loaded: LoadedModel, ref: str) -> dict[str, Any] | None:
    """The cursor state (a change log's position) of ``ref``'s latest version in the
    model's store; None when there is none or the store cannot be read here."""
    from dataferry.store.store import Store

    assert loaded.ecosystem is not None
    try:
        dataset = Store.for_model(loaded.root, loaded.ecosystem).dataset(ref)
        head = dataset.head() if dataset.exists() else None
    except (FerryError, OSError, ValueError):
        return None
    return head.manifest.cursor if head is not None else None


def add_comparison(report: Report, ref: str, spec: SourceDataset, where: tuple[Any, ...],
                   columns: list[SourceColumn]) -> None:
    """The ``schema-mismatch`` findings of ``ref``'s live ``columns`` against ``spec``."""
    from dataferry.connectors.drift import compare

    problems, warnings = compare(ref, spec, columns)
    for problem in problems:
        report.add("schema-mismatch", f"{ref}: {problem}", where)
    for warning in warnings:
        report.add("schema-mismatch", warning, where, severity="warning")


def is_schema_error(error: FerryError) -> bool:
    """Whether a source's error says its schema differs (else: it could not be reached)."""
    return isinstance(error, SourceError) and not error.transient and _is_schema(error)


def _is_schema(error: Exception) -> bool:
    text = str(error).lower()
    return "column" in text or ("table" in text and "not exist" in text)
