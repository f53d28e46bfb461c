"""Store commands: publish, datasets, log, show, export, diff, verify, gc, compact, keys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from dataferry.cli.common import JsonOption, ModelOption, model_dir, print_json, print_table
from dataferry.cli.progress import Progress
from dataferry.errors import StoreError, UsageError
from dataferry.store.store import Store, store_at

StoreOption = Annotated[
    str | None,
    typer.Option("--store", metavar="DIR|s3://BUCKET/PREFIX",
                 help="Read this store directly (no model needed): a folder (a copied "
                      "store, a clone) or a bucket (credentials from the AWS variables)."),
]


def register(app: typer.Typer) -> None:
    app.command("publish")(publish)
    app.command("datasets")(datasets)
    app.command("log")(log)
    app.command("show")(show)
    app.command("export")(export)
    app.command("diff")(diff)
    app.command("verify")(verify)
    app.command("gc")(gc)
    app.command("compact")(compact)
    app.command("keys")(keys)


class _Context:
    """The model (when there is one) and the store of a command."""

    def __init__(self, model: Path | None, store: str | None = None) -> None:
        from dataferry.model.graph import ModelIndex
        from dataferry.model.load import load_model

        self.index: ModelIndex | None = None
        if store is not None:
            self.store = store_at(store)
            return
        loaded = load_model(model_dir(model))
        if loaded.ecosystem is None:
            raise UsageError("ferry.yaml is not valid; run `ferry check` to see why")
        self.loaded = loaded
        self.defaults = loaded.ecosystem.defaults
        self.index = ModelIndex(loaded.ecosystem)
        self.store = Store.for_model(loaded.root, loaded.ecosystem)

    def spec(self, ref: str) -> Any:
        from dataferry.model.findings import suggest_ref

        if self.index is None:
            raise UsageError("publishing needs the model (run it in the model directory or "
                             "pass --model)")
        entry = self.index.datasets.get(ref)
        if entry is None:
            hint = suggest_ref(ref, self.index.datasets)
            raise UsageError(f"no dataset {ref!r} in the model{hint}")
        return entry

    def max_delete_ratio(self, spec: Any) -> float:
        """The dataset's ``max_delete_ratio``, else the model's default."""
        if spec.max_delete_ratio is not None:
            return float(spec.max_delete_ratio)
        return self.defaults.max_delete_ratio

    def dataset(self, ref: str) -> Any:
        if "." not in ref:
            raise UsageError(f"{ref!r} is not a dataset reference (<team>.<dataset>)")
        dataset = self.store.dataset(ref)
        if not dataset.exists():
            from dataferry.model.findings import suggest_ref

            known = self.store.refs()
            if self.index is not None and ref not in self.index.datasets:
                hint = suggest_ref(ref, [*self.index.datasets, *known])
                raise UsageError(f"no dataset {ref!r} in the model or the store{hint}")
            raise StoreError(f"dataset {ref} has no versions in the store yet; run "
                             f"`ferry publish {ref} FILE` (or `ferry run`)")
        return dataset


def _split_version(text: str) -> tuple[str, int | None]:
    ref, at, number = text.partition("@")
    if not at:
        return ref, None
    if not number.isdigit():
        raise UsageError(f"{text!r}: the version after @ must be a number, e.g. {ref}@3")
    return ref, int(number)


def publish(
    ref: str = typer.Argument(..., help="The dataset, <team>.<dataset>."),
    file: Path = typer.Argument(..., help="A .parquet, .csv or .jsonl file."),
    mode: str = typer.Option("replace", "--mode", help="replace | merge | append"),
    allow_delete: bool = typer.Option(
        False, "--allow-delete", help="Let a replace remove more of the dataset's rows than "
        "its max_delete_ratio (default 0.5) allows."),
    null_value: list[str] = typer.Option(
        [], "--null-value", help="A CSV text to read as NULL (repeat for several); adds to "
        "the dataset's null_values:"),
    model: ModelOption = None,
    json_out: JsonOption = False,
) -> None:
    """Publish a file as a new version of a declared dataset (checked and signed)."""
    from dataferry.connectors.files.source import null_values
    from dataferry.store.conform import SchemaError
    from dataferry.store.files import read_input
    from dataferry.store.publish import publish as publish_version

    if mode not in ("replace", "merge", "append"):
        raise UsageError(f"--mode must be replace, merge or append, not {mode!r}")
    context = _Context(model)
    entry = context.spec(ref)
    warnings: list[str] = []
    nulls = [*null_values(entry.source, entry.spec), *null_value]
    batches = read_input(file, ref, entry.spec.columns, nulls, warnings.append)
    with Progress(f"publishing {ref}", unit="rows") as progress:
        try:
            result = publish_version(
                context.store.dataset(ref), entry.spec, batches, keys=context.store.keys,
                mode=mode,  # type: ignore[arg-type]
                on_warning=warnings.append, on_rows=progress.advance,
                max_delete_ratio=None if allow_delete else context.max_delete_ratio(entry.spec),
            )
        except SchemaError as error:  # a value of the file: say which file
            public = f"{file}: {error.public}" if error.public else None
            raise StoreError(f"{file}: {error}", public=public) from None
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
    if json_out:
        print_json(result.__dict__)
        return
    typer.echo(
        f"published {ref} version {result.version}: {result.rows:,} rows "
        f"(+{result.added_rows:,} -{result.removed_rows:,}), {result.files} new file(s), "
        f"{_size(result.bytes)}, manifest {result.manifest_hash[:16]}, "
        f"{result.seconds:.1f} s"
    )


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:,.0f} {unit}" if unit == "B" else f"{count:,.1f} {unit}"
        count /= 1024
    return f"{count} B"  # pragma: no cover


def datasets(model: ModelOption = None, store: StoreOption = None,
             json_out: JsonOption = False) -> None:
    """List datasets: latest version, rows, bytes, last updated, owner."""
    context = _Context(model, store)
    refs = set(context.store.refs())
    owners: dict[str, str | None] = {}
    if context.index is not None:
        for ref, entry in context.index.datasets.items():
            refs.add(ref)
            team = context.index.ecosystem.teams[entry.team]
            owners[ref] = team.owners[0] if team.owners else None
    rows: list[dict[str, Any]] = []
    lags = _lags(context, refs)
    for ref in sorted(refs):
        dataset = context.store.dataset(ref)
        head = dataset.head() if dataset.exists() else None
        files = dataset.active_files(head.number, fetch=False) if head else []
        rows.append({
            "ref": ref,
            "version": head.number if head else None,
            "rows": head.manifest.rows if head else None,
            "bytes": sum(f.size for f in files) if head else None,
            "updated_at": head.manifest.created_at if head else None,
            "owner": owners.get(ref),
            **({"lag": lags[ref]} if ref in lags else {}),
        })
    if json_out:
        print_json(rows)
        return
    print_table(["dataset", "version", "rows", "size", "updated", "owner"] +
                (["lag"] if lags else []), [
        [r["ref"], _or_dash(r["version"]), _or_dash(r["rows"], "{:,}"),
         _size(r["bytes"]) if r["bytes"] is not None else "-",
         (r["updated_at"] or "-")[:19].replace("T", " "), r["owner"] or "-"] +
        ([_lag_text(r.get("lag"))] if lags else [])
        for r in rows
    ])


def _lags(context: _Context, refs: set[str]) -> dict[str, dict[str, Any]]:
    """The lag of each dataset that reads a change log (asking its source)."""
    if context.index is None:
        return {}
    from dataferry.engine.changes import change_lag

    found = {ref: change_lag(context.index, context.store, context.loaded.root, ref)
             for ref in sorted(refs)}
    return {ref: lag for ref, lag in found.items() if lag is not None}


def _lag_text(lag: dict[str, Any] | None) -> str:
    if lag is None:
        return "-"
    if lag.get("error"):
        return "unknown (source unreachable)"
    if lag.get("bytes") is None:
        return "not read yet"
    seconds = lag.get("seconds")
    return f"{_size(lag['bytes'])}, {'-' if seconds is None else f'{seconds:,.0f}'} s"


def _or_dash(value: Any, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def log(ref: str = typer.Argument(..., help="The dataset, <team>.<dataset>."),
        model: ModelOption = None, store: StoreOption = None,
        json_out: JsonOption = False) -> None:
    """Versions of a dataset: time, rows, files, changes, manifest hash, signer."""
    from dataferry.store.store import version_summary

    dataset = _Context(model, store).dataset(ref)
    entries = [version_summary(dataset, v) for v in dataset.versions()]
    entries.reverse()
    if json_out:
        print_json(entries)
        return
    print_table(["version", "created", "rows", "files", "added", "removed", "manifest", "signer"], [
        [str(e["version"]), e["created_at"][:19].replace("T", " "), f"{e['rows']:,}",
         str(e["files"]), f"+{e['added']:,}", f"-{e['removed']:,}", e["manifest_hash"][:16],
         e["signer"][:20]]
        for e in entries
    ])
    for e in entries:
        for source in e["lineage"]:
            typer.echo(f"  version {e['version']} read {source.get('ref')}@"
                       f"{source.get('version')}")


def show(
    target: str = typer.Argument(..., metavar="REF[@VERSION]", help="e.g. crm.customers@3"),
    limit: int = typer.Option(20, "--limit", min=0, help="How many rows to show."),
    columns: str | None = typer.Option(None, "--columns", metavar="a,b",
                                       help="Only these columns."),
    model: ModelOption = None, store: StoreOption = None, json_out: JsonOption = False,
) -> None:
    """Schema and first rows of a version (default: the latest)."""
    from dataferry.store.dataset import declared_types
    from dataferry.store.files import json_value
    from dataferry.store.python_rows import python_rows
    from dataferry.store.storage import decode_batch

    ref, number = _split_version(target)
    dataset = _Context(model, store).dataset(ref)
    version = dataset.resolve(number)
    schema = version.manifest.schema
    declared = declared_types(schema)
    rows: list[dict[str, Any]] = []
    if limit:
        for batch in dataset.reader(version, _columns(columns), batch_size=max(limit, 1)):
            for row in python_rows(decode_batch(batch, declared)):
                rows.append({k: json_value(v) for k, v in row.items()})
                if len(rows) >= limit:
                    break
            if len(rows) >= limit:
                break
    payload = {
        "ref": ref, "version": version.number, "rows_total": version.manifest.rows,
        "schema": [{"name": c["name"], "type": c["type"], "nullable": c["nullable"]}
                   for c in schema["columns"]],
        "primary_key": schema.get("primary_key", []),
        "rows": rows,
    }
    if json_out:
        print_json(payload)
        return
    typer.echo(f"{ref} version {version.number}: {version.manifest.rows:,} rows, created "
               f"{version.manifest.created_at}")
    key = set(payload["primary_key"])
    print_table(["column", "type", "nullable", "key"], [
        [c["name"], c["type"], "yes" if c["nullable"] else "no", "*" if c["name"] in key else ""]
        for c in payload["schema"]
    ])
    if rows:
        names = [c["name"] for c in payload["schema"] if c["name"] in rows[0]]
        print_table(names, [[_cell(row.get(n)) for n in names] for row in rows])


def _columns(option: str | None) -> list[str] | None:
    """``--columns a,b`` as a list (None: every column)."""
    return [c.strip() for c in option.split(",") if c.strip()] if option else None


def _cell(value: Any) -> str:
    import json

    if value is None:
        return "∅"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:39] + "…"


def export(
    target: str = typer.Argument(..., metavar="REF[@VERSION]"),
    file: Path = typer.Argument(..., help="Where to write: .parquet, .csv or .jsonl"),
    columns: str | None = typer.Option(None, "--columns", metavar="a,b",
                                       help="Only these columns."),
    model: ModelOption = None, store: StoreOption = None,
) -> None:
    """Write a version to a .parquet / .csv / .jsonl file."""
    from dataferry.store.dataset import declared_types
    from dataferry.store.files import file_format, write_batches
    from dataferry.store.storage import decode_batch

    file_format(file)
    ref, number = _split_version(target)
    dataset = _Context(model, store).dataset(ref)
    version = dataset.resolve(number)
    reader = dataset.reader(version, _columns(columns))
    declared = declared_types(version.manifest.schema)
    batches = (decode_batch(b, declared) for b in reader)
    first = next(batches, None)
    if first is None:
        import pyarrow as pa

        first = decode_batch(pa.RecordBatch.from_pylist([], schema=reader.schema),
                             declared)
    schema = first.schema

    def all_batches() -> Any:
        if first is not None:
            yield first
        yield from batches

    with Progress(f"exporting {ref}@{version.number}", total=version.manifest.rows,
                  unit="rows") as progress:
        rows = write_batches(all_batches(), schema, file, on_rows=progress.advance)
    typer.echo(f"wrote {rows:,} rows of {ref} version {version.number} to {file}")


def diff(
    ref: str = typer.Argument(...), v1: int = typer.Argument(...), v2: int = typer.Argument(...),
    limit: int = typer.Option(100, "--limit", min=0, help="How many changed keys to list."),
    model: ModelOption = None, store: StoreOption = None, json_out: JsonOption = False,
) -> None:
    """Rows added / removed / changed between two versions (by primary key)."""
    from dataferry.store.diff import diff_versions

    dataset = _Context(model, store).dataset(ref)
    result = diff_versions(dataset, v1, v2, limit=limit)
    if json_out:
        print_json(result.as_json())
        return
    typer.echo(f"{ref} {v1} -> {v2}: {result.added:,} added, {result.removed:,} removed, "
               f"{result.changed:,} changed")
    signs = {"added": "+", "removed": "-", "changed": "~"}
    for row in result.rows:
        typer.echo(f"  {signs[row['change']]} {row['key']}")


def verify(
    refs: list[str] = typer.Argument(None, metavar="[REF]...", help="Default: every dataset."),
    deep: bool = typer.Option(False, "--deep", help="Also recompute every chunk hash."),
    pin: str | None = typer.Option(None, "--key", metavar="DATASET_ID",
                                   help="The dataset id (genesis hash) to trust."),
    model: ModelOption = None, store: StoreOption = None, json_out: JsonOption = False,
) -> None:
    """Check every file hash, manifest signature and chain link; exit 1 on any problem."""
    from dataferry.store.verify import VerifyReport, verify_dataset

    context = _Context(model, store)
    names = refs or context.store.refs()
    report = VerifyReport()
    total = sum(_dataset_bytes(context.store.dataset(r)) for r in names
                if context.store.dataset(r).exists())
    with Progress("verifying", total=total, unit="bytes") as progress:
        for ref in names:
            verify_dataset(context.dataset(ref), report, pinned_id=pin, deep=deep,
                           on_bytes=progress.advance)
    if json_out:
        print_json({"ok": report.ok, "checked_files": report.checked_files,
                    "checked_versions": report.checked_versions,
                    "not_held_files": report.not_held_files,
                    "not_held_chunks": report.not_held_chunks,
                    "problems": [p.as_json() for p in report.problems]})
    else:
        for problem in report.problems:
            typer.echo(problem.as_text())
        verdict = "ok" if report.ok else f"FAILED: {len(report.problems)} problem(s)"
        typer.echo(f"{verdict}: {len(names)} dataset(s), {report.checked_versions} version(s), "
                   f"{report.checked_files} file(s), {_size(report.checked_bytes)} checked")
        if report.not_held_files:
            typer.echo(f"{report.not_held_files} file(s) of older versions not held here "
                       "(a sparse clone: ferry clone --version)")
        if report.not_held_chunks:
            typer.echo(f"{report.not_held_chunks} chunk(s) of other columns not held here "
                       "(a sparse clone: ferry clone --columns)")
    raise typer.Exit(0 if report.ok else 1)


def _dataset_bytes(dataset: Any) -> int:
    return sum(f.size for v in dataset.versions() for f in v.manifest.files)


def gc(
    refs: list[str] = typer.Argument(None, metavar="[REF]...", help="Default: every dataset."),
    keep: int | None = typer.Option(None, "--keep", min=1,
                                    help="Versions to keep (default: each dataset's retention:)."),
    force: bool = typer.Option(False, "--force",
                               help="Drop versions consumers still hold too; their next "
                                    "delivery reloads them in full."),
    model: ModelOption = None, json_out: JsonOption = False,
) -> None:
    """Drop versions beyond retention and files no kept version needs.

    Versions a consumer's last delivery holds, or a running delivery or transform reads
    (per the run history), are kept unless --force. Then the Delta Sharing cache loses
    the files derived for dropped versions and for needs no longer in the model.
    """
    from dataferry.sharing.cache_gc import sweep_cache
    from dataferry.store.gc import collect

    context = _Context(model)
    holds = _Holds(context)
    results = []
    try:
        for ref in refs or context.store.refs():
            retention = keep
            if retention is None and context.index is not None and ref in context.index.datasets:
                retention = context.index.datasets[ref].spec.retention
            results.append(collect(context.dataset(ref), context.store.keys, retention,
                                   holds=holds.of(ref), force=force))
        uploads = _sweep_uploads(context, holds)
    finally:
        holds.close()
    cache = sweep_cache(context.store, context.index)
    if json_out:
        print_json([{**r.__dict__, "kept": [h.__dict__ for h in r.kept],
                     "forced": [h.__dict__ for h in r.forced]} for r in results])
        return
    for r in results:
        dropped = f"dropped versions {r.dropped_versions[0]}..{r.dropped_versions[-1]}, " if (
            r.dropped_versions) else ""
        typer.echo(f"{r.ref}: {dropped}deleted {len(r.deleted_files)} file(s), freed "
                   f"{_size(r.freed_bytes)}")
        for h in r.kept:
            typer.echo(f"  kept version {h.version}: {h.job_id} holds it ({h.why})")
        for h in r.forced:
            typer.echo(f"  dropped version {h.version} that {h.job_id} holds ({h.why}): its "
                       "next delivery reloads it in full")
    if uploads[0]:
        typer.echo(f"agent uploads: removed those of {uploads[0]} job(s) never published "
                   f"(their ferry run was stopped), freed {_size(uploads[1])}")
    if cache.removed:
        typer.echo(f"sharing cache: removed {len(cache.removed)} entr"
                   f"{'y' if len(cache.removed) == 1 else 'ies'} of dropped versions or "
                   f"old needs, freed {_size(cache.freed_bytes)}")


def compact(
    ref: str = typer.Argument(..., help="The dataset, <team>.<dataset>."),
    model: ModelOption = None, store: StoreOption = None, json_out: JsonOption = False,
) -> None:
    """Rewrite the files that carry deletion vectors, so every Delta reader opens the table.

    Publishes a new signed version with the same rows (no data change for deliveries)
    and drops the table's deletionVectors feature.
    """
    from dataferry.store.compact import compact as compact_dataset

    context = _Context(model, store)
    result = compact_dataset(context.dataset(ref), context.store.keys)
    if json_out:
        print_json(result.as_json())
        return
    if result.unchanged:
        typer.echo(f"{ref} version {result.version}: no file has a deletion vector; "
                   "nothing to compact")
        return
    typer.echo(
        f"compacted {ref} into version {result.version}: {result.rows:,} rows, rewrote "
        f"{result.rewritten_files} file(s) with deletion vectors as {result.written_files} "
        f"({_size(result.bytes)}, {result.deleted_rows:,} deleted rows dropped); Delta "
        f"reader version {result.reader_version}, {result.seconds:.1f} s")


def _sweep_uploads(context: _Context, holds: _Holds) -> tuple[int, int]:
    """Remove agent uploads that will never be published (``Uploads.sweep``)."""
    from dataferry.agent.uploads import Uploads

    uploads = Uploads(context.store.home)
    if context.index is None or not uploads.root.is_dir():
        return 0, 0
    from dataferry.agent.queue import AgentJobs
    from dataferry.engine.context import RunContext

    if holds.run_context is None:
        holds.run_context = RunContext.from_loaded(context.loaded)
    queue = AgentJobs(holds.run_context.metadata)
    return uploads.sweep(queue.ended_at, queue.now())


class _Holds:
    """What consumers hold, from the run history, opened only when gc would drop a version."""

    def __init__(self, context: _Context) -> None:
        self.context = context
        self.run_context: Any = None

    def of(self, ref: str) -> Callable[[], list[Any]] | None:
        if self.context.index is None:
            return None

        def read() -> list[Any]:
            from dataferry.broker.graph import build_graph
            from dataferry.engine.context import RunContext

            if self.run_context is None:
                self.run_context = RunContext.from_loaded(self.context.loaded)
            index = self.run_context.index
            jobs = {j.id for j in build_graph(index).jobs.values() if j.kind == "deliver"}
            held: list[Any] = self.run_context.runs.held_versions(ref, jobs)
            return held

        return read

    def close(self) -> None:
        if self.run_context is not None:
            self.run_context.close()


def keys(model: ModelOption = None, json_out: JsonOption = False,
         generate: Annotated[bool, typer.Option(
             "--generate", help="First make the missing key of every team in the model (to "
             "share them with other workers before any of them publishes).")] = False,
         ) -> None:
    """Show the teams' signing keys (public part and fingerprint; never the private key)."""
    context = _Context(model)
    if generate:
        assert context.index is not None
        for team in sorted(context.index.ecosystem.teams):
            context.store.keys.signing_key(team, create=True)
    infos = context.store.keys.keys()
    if json_out:
        print_json([{"team": k.team, "public_key": k.public_key, "fingerprint": k.fingerprint,
                     "path": str(k.path)} for k in infos])
        return
    if not infos:
        typer.echo(f"no keys yet in {context.store.keys.directory} (a team's key is made when "
                   "it first publishes)")
        return
    print_table(["team", "fingerprint", "public key"],
           [[k.team, k.fingerprint, k.public_key] for k in infos])
