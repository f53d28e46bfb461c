"""``ferry clone`` and ``ferry pull`` (replication between peers), and the store-only
mode of ``ferry serve`` (``--store DIR --anonymous``). See docs/replication.md."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dataferry.cli.common import JsonOption, print_json
from dataferry.errors import FerryError, UsageError

if TYPE_CHECKING:
    from dataferry.store.store import Store

TokenOption = Annotated[
    str | None,
    typer.Option("--token", envvar="FERRY_TOKEN", show_envvar=True, metavar="T",
                 help="API token for the peer (a server with a model wants one)."),
]


def register(app: typer.Typer) -> None:
    app.command("clone")(clone)
    app.command("pull")(pull)


def clone(
    url: str = typer.Argument(..., metavar="URL",
                              help="The dataset on a peer: http://HOST:PORT/<team>.<dataset>."),
    directory: Path = typer.Argument(..., metavar="DIR", help="The store to clone into."),
    token: TokenOption = None,
    key: str | None = typer.Option(None, "--key", metavar="DATASET_ID",
                                   help="The dataset id to trust (else: trust on first use)."),
    version: int | None = typer.Option(None, "--version", min=1, metavar="N",
                                       help="Hold version N only: every manifest up to N (verified), "
                                       "but only the files version N reads; pull goes on "
                                       "from N."),
    columns: str | None = typer.Option(
        None, "--columns", metavar="a,b",
        help="Hold only these columns (and the primary key): Range reads of each file's "
             "footer and column chunks, each chunk verified."),
    json_out: JsonOption = False,
) -> None:
    """Copy a dataset from a peer into store DIR, verifying every byte before it shows."""
    from dataferry.replication.peer import Peer, split_url
    from dataferry.replication.sync import sync
    from dataferry.store.store import Store

    origin, ref = split_url(url)
    directory.mkdir(parents=True, exist_ok=True)
    store = Store(directory.resolve(), Path.home() / ".ferry")
    with Peer(origin, ref, token) as peer:
        wanted = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
        result = sync(peer, store.dataset(ref), pinned=key, up_to=version, columns=wanted)
    if json_out:
        print_json(result.as_json())
        return
    typer.echo(_summary(result.as_json()))
    if result.trust == "first use":
        typer.echo(f"dataset id {result.dataset_id} (trusted on first use: compare it with "
                   "the origin's `ferry log`, or pin it with --key)")


def pull(
    directory: Path = typer.Argument(Path("."), metavar="[DIR]",
                                     help="The store holding clones (default: here)."),
    token: TokenOption = None,
    watch: bool = typer.Option(False, "--watch",
                               help="Stay connected and apply each new version as it is "
                                    "published (Ctrl-C stops)."),
    json_out: JsonOption = False,
) -> None:
    """Bring every cloned dataset in DIR up to its origin's head, verified."""
    from dataferry.replication.origin import read_origin
    from dataferry.replication.peer import Peer
    from dataferry.replication.sync import sync
    from dataferry.store.store import Store

    if not directory.is_dir():
        raise UsageError(f"store directory {directory} does not exist")
    store = Store(directory.resolve(), Path.home() / ".ferry")
    if watch:
        _watch(store, token, json_out)
        return
    results: list[dict[str, object]] = []
    failed = 0
    for ref in store.refs():
        dataset = store.dataset(ref)
        origin = read_origin(dataset)
        if origin is None:
            results.append({"dataset": ref, "skipped": "not a clone (no _sig/origin.json)"})
            continue
        try:
            with Peer(origin.url, ref, token) as peer:
                results.append(sync(peer, dataset).as_json())
        except FerryError as exc:
            failed += 1
            results.append({"dataset": ref, "origin": origin.url, "error": str(exc)})
    if json_out:
        print_json(results)
    else:
        if not results:
            typer.echo(f"no datasets in {directory}: `ferry clone URL {directory}` first")
        for item in results:
            if "error" in item:
                typer.echo(f"error: {item['error']}", err=True)
            elif "skipped" in item:
                typer.echo(f"{item['dataset']}: skipped, {item['skipped']}")
            else:
                typer.echo(_summary(item))
    if failed:
        raise typer.Exit(1)


def _watch(store: Store, token: str | None, json_out: bool) -> None:
    """``pull --watch``: one line (or JSON object) per pull that brought versions, one
    line on stderr per failure; runs until Ctrl-C or SIGTERM."""
    import json
    import signal
    import threading

    from dataferry.replication.sync import SyncResult
    from dataferry.replication.watch import watch

    stop = threading.Event()
    lock = threading.Lock()

    def applied(result: SyncResult) -> None:
        with lock:
            typer.echo(json.dumps(result.as_json()) if json_out else _summary(result.as_json()))

    def failed(ref: str, message: str) -> None:
        with lock:
            typer.echo(f"error: {message}", err=True)

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    followed = watch(store, token, applied, failed, stop)
    if not followed:
        raise UsageError(f"no clones in {store.root} to watch: `ferry clone URL "
                         f"{store.root}` first")
    typer.echo(f"watching {', '.join(followed)} (Ctrl-C stops)", err=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        stop.set()


def _summary(item: dict[str, object]) -> str:
    versions = item["versions"]
    assert isinstance(versions, list)
    done = (f"versions {versions[0]}..{versions[-1]}" if len(versions) > 1 else
            f"version {versions[0]}" if versions else "nothing new")
    return (f"{item['dataset']}: {done} from {item['origin']} (head {item['head']}); "
            f"{item['files_fetched']} files fetched, {item['files_reused']} already held, "
            f"{item['bytes_fetched']:,} bytes received")


def serve_store(host: str, port: int, store_dir: str, anonymous: bool) -> None:
    """``ferry serve --store DIR --anonymous``: the replication endpoints over a store,
    read-only, to anyone; without ``--anonymous`` it refuses to start."""
    import uvicorn

    from dataferry.replication.serve import anonymous_app
    from dataferry.store.store import store_at

    if not anonymous:
        raise UsageError("ferry serve --store serves a store without a model, so there are no "
                         "users to check a token against: add --anonymous to serve every "
                         "dataset in it to anyone (read-only, replication only)")
    store = store_at(store_dir)
    typer.echo(f"serving {len(store.refs())} datasets of {store.location} to anyone, read-only "
               f"(replication only) on http://{host}:{port}", err=True)
    uvicorn.run(anonymous_app(store), host=host, port=port, log_level="warning")
