"""The catalog as the API and the web UI show it: datasets, versions, rows, lineage.

Everything returned is JSON-ready (dataclasses of plain values for ``dataclasses.asdict``,
or plain dicts); "not found" is None, for the route to turn into a 404. Authorization is
not decided here: callers pass the ``RowAccess`` that ``authz.row_access`` granted.

Listing must stay fast on ecosystems of 100,000 datasets, so nothing here opens every
dataset's manifests or scans every dataset per request: the listing and its search index
(``catalog_search``) are built once per ``ModelIndex`` (``prepare``: a server does it
when it loads or reloads a model), and the latest version of a listed dataset comes from
a small cache keyed by its manifest directory's inode and modification time.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from dataferry.engine.deliver import MASKED_TYPE, _masker, mask_key
from dataferry.metadata import CONSUMED, Metadata, RunHistory, Staleness
from dataferry.model.graph import ModelIndex
from dataferry.model.spec import Transformer, duration_seconds
from dataferry.server.authz import RowAccess
from dataferry.server.catalog_search import SearchIndex
from dataferry.store.dataset import SIG, DatasetStore, Version, declared_types
from dataferry.store.duck import cast_batches, ident, spilling
from dataferry.store.files import json_value
from dataferry.store.manifest import Manifest
from dataferry.store.storage import decode_batch, store_schema
from dataferry.store.store import Store

MAX_ROWS = 1000
"""The most rows one ``rows`` call returns, whatever ``limit`` asks for."""
_BATCH_ROWS = 8192


@dataclass(frozen=True)
class DatasetSummary:
    """One row of the catalog listing."""

    ref: str
    team: str
    name: str
    description: str | None
    classification: str
    kind: str  # source | transformer
    owners: list[str]
    version: int | None
    rows: int | None
    updated_at: str | None


@dataclass(frozen=True)
class _Listing:
    """The model's part of every listing row, built once per index and sorted by ref:
    the summaries without the version fields, and the index that finds which of them a
    search matches (the text it looks in: ref, description and column names in lower
    case, one per line)."""

    summaries: list[DatasetSummary]
    search: SearchIndex


_LISTINGS: weakref.WeakKeyDictionary[ModelIndex, _Listing] = weakref.WeakKeyDictionary()
_BUILDING = threading.Lock()  # two first requests at once build it once


def prepare(index: ModelIndex) -> None:
    """Build the catalog listing and its search index for ``index`` now, rather than on
    the first request (seconds at 100,000 datasets)."""
    _listing(index)


def lists_in_memory(index: ModelIndex, store: Store) -> bool:
    """Whether ``list_datasets`` needs nothing but memory and a ``stat`` of a local
    directory per listed dataset (a manifest's read when a head changed): the listing is
    built and the store is a directory. In a bucket, listing brings each dataset's
    mirror in step over the network; the first listing of a model builds its index."""
    return store.remote is None and index in _LISTINGS


def _listing(index: ModelIndex) -> _Listing:
    listed = _LISTINGS.get(index)
    if listed is not None:
        return listed
    with _BUILDING:
        listed = _LISTINGS.get(index)
        if listed is None:
            listed = _LISTINGS[index] = _build_listing(index)
    return listed


def _build_listing(index: ModelIndex) -> _Listing:
    summaries, texts = [], []
    for ref in sorted(index.datasets):
        entry = index.datasets[ref]
        spec = entry.spec
        summaries.append(DatasetSummary(
            ref, entry.team, entry.name, spec.description, spec.classification,
            "transformer" if entry.is_transformer else "source",
            list(index.ecosystem.teams[entry.team].owners), None, None, None))
        texts.append("\n".join([ref, spec.description or "", *spec.columns]).lower())
    return _Listing(summaries, SearchIndex(texts, [s.team for s in summaries]))


_Head = tuple[int, int, str]  # version, rows, created_at


class _HeadCache:
    """The latest version of a dataset, cached by ``(inode, mtime)`` of ``_sig/m``.

    Publishing renames a new signature into that directory, which changes its mtime, so
    an unchanged stamp means an unchanged head. File system timestamps are coarse (a
    few ms), so a stamp younger than ``_RACY_NS`` is not trusted: two publishes in one
    tick would otherwise look like one (git's "racy clean" problem).
    """

    _RACY_NS = 2_000_000_000
    _MAX = 50_000  # entries; cleared wholesale when full (rare, and only costs re-reads)

    def __init__(self) -> None:
        self._entries: dict[str, tuple[tuple[int, int], _Head | None]] = {}
        self._lock = threading.Lock()

    def head(self, store: Store, ref: str) -> _Head | None:
        # A local store's directory is a string away; only a miss builds the dataset. In a
        # bucket, building it is what brings its mirror in step, so it comes first.
        dataset = None if store.remote is None else store.dataset(ref)
        if dataset is None:  # DatasetStore's layout: <root>/<team>/<name>/_sig/m
            base = os.path.join(store.root, "")  # with one separator at the end
            key = f"{base}{ref.replace('.', os.sep, 1)}{os.sep}{SIG}{os.sep}m"
        else:
            key = str(dataset.sig / "m")
        try:
            stat = os.stat(key)
        except OSError:
            return None
        stamp = (stat.st_ino, stat.st_mtime_ns)
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        head = _read_head(dataset or store.dataset(ref))
        if time.time_ns() - stat.st_mtime_ns > self._RACY_NS:
            with self._lock:
                if len(self._entries) >= self._MAX:
                    self._entries.clear()
                self._entries[key] = (stamp, head)
        return head


def _read_head(dataset: DatasetStore) -> _Head | None:
    number = dataset.head_number()
    if number is None:
        return None
    try:
        manifest = Manifest.from_bytes(dataset.manifest_path(number).read_bytes())
    except (OSError, ValueError, KeyError, TypeError):
        return None  # removed or unreadable meanwhile: `ferry verify` is where to look
    return number, manifest.rows, manifest.created_at


_HEADS = _HeadCache()


def list_datasets(index: ModelIndex, store: Store, search: str | None = None,
                  team: str | None = None, offset: int = 0,
                  limit: int = 50) -> tuple[list[DatasetSummary], int]:
    """One page of the catalog, sorted by ref, and how many datasets match in all.

    ``search``: every word must occur (case-insensitively) in the ref, the description
    or a column name. ``team``: only that team's datasets.
    """
    listed = _listing(index)
    hits = listed.search.find(search, team)
    page = []
    start = max(offset, 0)
    for i in hits[start:start + max(limit, 0)].tolist():
        summary = listed.summaries[i]
        head = _HEADS.head(store, summary.ref)
        page.append(summary if head is None else replace(
            summary, version=head[0], rows=head[1], updated_at=head[2]))
    return page, len(hits)


@dataclass(frozen=True)
class DatasetDetail:
    """The dataset page and ``GET /datasets/{ref}``."""

    ref: str
    team: str
    name: str
    kind: str
    description: str | None
    classification: str
    status: str
    deprecated: bool | str
    owners: list[str]
    primary_key: list[str]
    columns: list[dict[str, Any]]  # name, type, nullable, classification, pii, description
    inputs: list[str]  # what a transformer reads
    consumers: list[dict[str, Any]]  # consumer, team, mode, columns, where, table, mask, freshness
    transformers: list[str]  # transformer outputs that read this dataset
    versions: int
    latest: dict[str, Any] | None  # version, rows, created_at, manifest_hash
    freshness: dict[str, Any]  # status fresh|stale|unknown, data_as_of, reasons, needs
    lag: dict[str, Any] | None = None
    """Datasets that read a change log: bytes and seconds behind the source
    (``engine.changes.change_lag``); None for the others."""


def dataset_detail(index: ModelIndex, store: Store, metadata: Metadata | None, ref: str,
                   now: datetime | None = None, root: Path | None = None
                   ) -> DatasetDetail | None:
    """Everything the dataset page shows, or None for a ref the model does not have.

    ``metadata`` (optional) adds the scheduler's stale marks and the producer's last good
    run to the freshness status; ``now`` is for tests. With the model's ``root``, a
    dataset that reads a change log also gets its lag (asking its source).
    """
    entry = index.datasets.get(ref)
    if entry is None:
        return None
    spec = entry.spec
    columns = [{"name": name, "type": column.type, "nullable": column.nullable,
                "classification": column.classification or spec.classification,
                "pii": column.pii, "description": column.description}
               for name, column in spec.columns.items()]
    consumers, transformers = [], []
    default = index.ecosystem.defaults.freshness
    for receipt in index.receivers.get(ref, []):
        if receipt.need is None:
            transformers.append(f"{receipt.team}.{receipt.entity}")
            continue
        need = receipt.need
        consumers.append({
            "consumer": f"{receipt.team}.{receipt.entity}", "team": receipt.team,
            "mode": need.mode, "columns": index.delivered_columns(receipt), "where": need.where,
            "table": need.table or entry.name, "mask": list(need.mask),
            "freshness": need.freshness or default,
        })
    dataset = store.dataset(ref)
    numbers = dataset.version_numbers()
    latest = None
    changed_at = None
    if numbers:
        head = dataset.version(numbers[-1])
        latest = {"version": head.number, "rows": head.manifest.rows,
                  "created_at": head.manifest.created_at, "manifest_hash": head.hash}
        # a compaction (ferry compact) is no new data: freshness looks past it
        changed_at = dataset.rows_version(head).manifest.created_at
    producer = f"{'transform' if entry.is_transformer else 'ingest'}:{ref}"
    freshness = _freshness(consumers, changed_at, producer, metadata, default,
                           now or datetime.now(UTC))
    return DatasetDetail(
        ref, entry.team, entry.name, "transformer" if entry.is_transformer else "source",
        spec.description, spec.classification, spec.status, spec.deprecated,
        list(index.ecosystem.teams[entry.team].owners), list(spec.primary_key), columns,
        list(spec.inputs) if isinstance(spec, Transformer) else [], consumers,
        sorted(transformers), len(numbers), latest, freshness,
        _lag(index, store, root, ref) if root is not None else None)


def _lag(index: ModelIndex, store: Store, root: Path, ref: str) -> dict[str, Any] | None:
    from dataferry.engine.changes import change_lag

    return change_lag(index, store, root, ref)


def _freshness(consumers: list[dict[str, Any]], changed_at: str | None, producer: str,
               metadata: Metadata | None, default: str, now: datetime) -> dict[str, Any]:
    """Fresh or stale, per consumer need and overall.

    The data is current as of the later of ``changed_at`` (the time of the latest version
    that changed rows: a compaction does not) and the producer's
    last good run (an ingest that found nothing new publishes no version, yet confirms
    the data). A need is stale when the scheduler marked its delivery stale, or when
    that moment is older than the need's ``freshness``. Without consumers the
    ecosystem's default freshness is the yardstick.
    """
    as_of = _parse(changed_at) if changed_at else None
    marks = {}
    if metadata is not None:
        run = RunHistory(metadata).last_run(producer, CONSUMED)
        if run is not None:
            started = _aware(run.started_at)
            as_of = started if as_of is None else max(as_of, started)
        marks = {mark.job_id: mark.reason for mark in Staleness(metadata).stale()}
    wanted = [(f"consumer {c['consumer']}", f"deliver:{c['consumer']}:{c['table']}",
               c["freshness"]) for c in consumers] or [("the default", "", default)]
    needs = []
    for who, job_id, limit in wanted:
        if job_id in marks:
            status, reason = "stale", f"{who}: {marks[job_id]}"
        elif as_of is None:
            status, reason = "unknown", "no version published yet"
        elif (now - as_of).total_seconds() > duration_seconds(limit):
            status = "stale"
            reason = f"data is from {as_of:%Y-%m-%d %H:%M}Z, older than the {limit} {who} asks for"
        else:
            status, reason = "fresh", f"within the {limit} {who} asks for"
        needs.append({"consumer": who.removeprefix("consumer ") if job_id else None,
                      "freshness": limit, "status": status, "reason": reason})
    statuses = {n["status"] for n in needs}
    overall = "stale" if "stale" in statuses else "unknown" if "unknown" in statuses else "fresh"
    return {"status": overall, "data_as_of": as_of.isoformat() if as_of else None,
            "reasons": [n["reason"] for n in needs if n["status"] != "fresh"], "needs": needs}


def _parse(text: str) -> datetime:
    return _aware(datetime.fromisoformat(text.replace("Z", "+00:00")))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def versions(store: Store, ref: str, offset: int = 0,
             limit: int = 50) -> tuple[list[dict[str, Any]], int]:
    """One page of a dataset's versions, newest first, and how many there are.

    ``files_added``/``files_removed`` are what each version changed: the count of all
    files a version holds would mean folding the whole history for every entry.
    """
    dataset = store.dataset(ref)
    numbers = dataset.version_numbers()[::-1]
    page = []
    for number in numbers[max(offset, 0):max(offset, 0) + max(limit, 0)]:
        version = dataset.version(number)
        manifest = version.manifest
        page.append({
            "version": number, "created_at": manifest.created_at, "rows": manifest.rows,
            "added": manifest.added_rows, "removed": manifest.removed_rows,
            "files_added": len(manifest.files), "files_removed": len(manifest.removed),
            "mode": manifest.mode, "manifest_hash": version.hash,
        })
    return page, len(numbers)


@dataclass(frozen=True)
class RowsPage:
    """``GET /datasets/{ref}/versions/{n}/rows``: one page of rows as ``access`` allows."""

    ref: str
    version: int
    columns: list[dict[str, Any]]  # name, type (masked columns: string), masked
    rows: list[dict[str, Any]]
    offset: int
    limit: int
    more: bool  # whether rows follow this page
    access: str  # why the caller may see them (RowAccess.reason)


def rows(store: Store, ref: str, version: int | None, access: RowAccess, offset: int = 0,
         limit: int = 100) -> RowsPage | None:
    """Rows ``offset``..``offset+limit`` of a version (None: the latest), or None if the
    dataset has no such version.

    Only ``access.columns``, only rows matching ``access.where`` (applied to the stored
    values, as deliveries apply it), ``access.mask`` columns replaced by the keyed hash
    deliveries use — so a consumer's team sees through the API exactly the values its
    sink holds. Values are decoded to their declared types and made JSON-safe. Rows
    stream in the store's file order (stable from page to page) and reading stops once
    the page is full: memory stays bounded whatever the offset. ``limit`` is capped at
    ``MAX_ROWS``.
    """
    offset, limit = max(offset, 0), min(max(limit, 0), MAX_ROWS)
    dataset = store.dataset(ref)
    numbers = dataset.version_numbers()
    number = numbers[-1] if version is None and numbers else version
    if number is None or number not in numbers:
        return None
    chosen = dataset.version(number)
    declared = declared_types(chosen.manifest.schema)
    nullable = {c["name"]: c["nullable"] for c in chosen.manifest.schema["columns"]}
    names = [c for c in access.columns if c in declared]  # older versions may lack a column
    masked = [c for c in names if c in access.mask]
    schema = store_schema([(n, declared[n], nullable[n]) for n in names])
    batches: list[pa.RecordBatch] = []
    more = False
    with _stored_rows(dataset, chosen, names, list(declared), access.where, schema) as stream:
        skip, wanted = offset, limit + 1  # one more than asked: is there a next page?
        for batch in stream:
            if skip >= batch.num_rows:
                skip -= batch.num_rows
                continue
            batch, skip = batch.slice(skip, wanted), 0
            batches.append(batch)
            wanted -= batch.num_rows
            if wanted == 0:
                more = True
                break
    mask = _masker(mask_key(store.home)) if masked else None
    out: list[dict[str, Any]] = []
    for batch in batches:
        decoded = decode_batch(batch, {n: declared[n] for n in names})
        arrays = [mask(column) if mask is not None and name in masked else column
                  for name, column in zip(names, decoded.columns, strict=True)]
        table = pa.Table.from_arrays(arrays, names=names)
        out.extend({k: json_value(v) for k, v in row.items()} for row in table.to_pylist())
    columns = [{"name": n, "type": MASKED_TYPE if n in masked else declared[n],
                "masked": n in masked} for n in names]
    return RowsPage(ref, number, columns, out[:limit], offset, limit, more, access.reason)


@contextmanager
def _stored_rows(dataset: DatasetStore, version: Version, names: list[str], every: list[str],
                 where: str | None, schema: pa.Schema) -> Iterator[Iterator[pa.RecordBatch]]:
    """A version's rows in stored types, ``names`` only, filtered by ``where``.

    Not ``changes.version_rows``: it lets DuckDB return rows in any order (fine for a
    delivery, wrong for pages). Here DuckDB filters the version's ordered Arrow stream
    on one thread, which keeps the order. The filter is parsed as one expression
    (``Relation.filter``), so text such as ``x) union all (select ...`` is a syntax
    error, not a second query, and the connection can open no file: a team writing
    its consumer's ``where`` can neither add rows, nor unmask columns, nor read files.
    """
    if not where:
        yield iter(dataset.reader(version, names, batch_size=_BATCH_ROWS))
        return
    with spilling("ferry-rows-") as db:
        for setting in ("threads = 1", "enable_external_access = false",
                        "lock_configuration = true"):
            db.execute(f"set {setting}")
        stored = db.from_arrow(dataset.reader(version, every, batch_size=_BATCH_ROWS))
        selected = stored.filter(where).select(*(ident(n) for n in names))
        yield cast_batches(selected.to_arrow_reader(_BATCH_ROWS), schema)


def lineage(index: ModelIndex, ref: str, depth: int | None = None) -> dict[str, Any] | None:
    """The lineage graph around ``ref`` (None for a ref the model does not have).

    Upstream: the transformers that produce it and their inputs, recursively, down to
    source datasets. Downstream: the transformers that read it, their outputs'
    readers, recursively, and the consumers receiving each of those datasets.
    ``depth`` limits the hops in each direction. Nodes are ``{id, kind, label, team,
    ref, focus}`` with ``kind`` one of ``source-dataset``, ``transformer`` (a dataset a
    transformer produces), ``consumer``; edges ``{from, to}`` point the way data flows.
    Ids are ``dataset:<ref>`` and ``consumer:<ref>`` (the two kinds of ref may collide).
    """
    if ref not in index.datasets:
        return None
    nodes: dict[str, dict[str, Any]] = {}
    edges: dict[tuple[str, str], None] = {}  # ordered set

    def dataset_node(name: str) -> str:
        entry = index.datasets[name]
        node_id = f"dataset:{name}"
        nodes.setdefault(node_id, {
            "id": node_id, "kind": "transformer" if entry.is_transformer else "source-dataset",
            "label": name, "team": entry.team, "ref": name, "focus": name == ref})
        return node_id

    dataset_node(ref)
    frontier, seen, hops = [ref], {ref}, 0
    while frontier and (depth is None or hops < depth):  # upstream
        later = []
        for name in frontier:
            spec = index.datasets[name].spec
            for source in spec.inputs if isinstance(spec, Transformer) else []:
                if source in index.datasets:
                    edges[(dataset_node(source), f"dataset:{name}")] = None
                    if source not in seen:
                        seen.add(source)
                        later.append(source)
        frontier, hops = later, hops + 1
    frontier, seen, hops = [ref], {ref}, 0
    while frontier and (depth is None or hops < depth):  # downstream
        later = []
        for name in frontier:
            for receipt in index.receivers.get(name, []):
                target = f"{receipt.team}.{receipt.entity}"
                if receipt.need is not None:
                    node_id = f"consumer:{target}"
                    nodes.setdefault(node_id, {"id": node_id, "kind": "consumer",
                                               "label": target, "team": receipt.team,
                                               "ref": target, "focus": False})
                elif target in index.datasets:
                    node_id = dataset_node(target)
                    if target not in seen:
                        seen.add(target)
                        later.append(target)
                else:
                    continue
                edges[(f"dataset:{name}", node_id)] = None
        frontier, hops = later, hops + 1
    return {"nodes": list(nodes.values()),
            "edges": [{"from": a, "to": b} for a, b in edges]}
