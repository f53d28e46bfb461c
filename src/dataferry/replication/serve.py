"""The replication endpoints, under ``/api/v1/replication/<team>.<dataset>/``.

    GET  genesis               the genesis bytes (their hash is the dataset id)
    GET  manifests?from=N      signed manifests from version N on, with their chunk lists
    GET  head?after=N&wait=S   the newest version; waits up to S seconds for one past N
    GET  files/<path>          a file of the dataset directory (HEAD and Range supported)

The protocol, precisely, is in docs/replication.md. ``ferry serve`` with a model mounts
these next to the API (``access`` decides who may clone, and manifest fetches are
audited); ``ferry serve --store DIR --anonymous`` serves only these, to anyone
(``anonymous_app``). Nothing here writes to the store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from dataferry import __version__
from dataferry.replication.access import clone_grant
from dataferry.replication.paths import plain_path
from dataferry.server.auth import scopes
from dataferry.server.auth.dependency import authenticate, client_ip, get_auth, presented_token
from dataferry.server.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    Unauthorized,
    install_error_handlers,
)
from dataferry.server.mirror_pins import PinPerRequest
from dataferry.server.principal import Principal
from dataferry.store.dataset import DatasetStore
from dataferry.store.store import Store

router = APIRouter(tags=["replication"])
PREFIX = "/replication/{ref}"
MANIFESTS_PER_PAGE = 500
LONGEST_WAIT = 60.0
POLL_SECONDS = 0.2
REMOTE_POLL_SECONDS = 2.0
"""How often a long-poll on a store in a bucket lists it for new versions."""


@dataclass(frozen=True)
class Reader:
    """Who is asking: a user of the model's server, or anyone (an anonymous store)."""

    principal: Principal | None
    store: Store
    agent_network: str | None = None
    """A gateway agent of this network (``dataferry.agent``): it may clone what the sinks
    of its network need."""

    @property
    def username(self) -> str | None:
        return self.principal.username if self.principal is not None else None

    def dataset(self, request: Request, ref: str, *, audited: str | None = None,
                file: str | None = None) -> DatasetStore:
        """The dataset ``ref`` if this reader may clone it (else 403/404, audited for
        ``audited`` actions). ``file``: a file of it to be read; on a store in a bucket,
        its mirror is brought in step only when the file is not there yet."""
        if self.agent_network is not None:
            from dataferry.agent.access import agent_grant

            agent_grant(request.app.state.context.index, self.agent_network, ref)
            dataset = self.store.dataset(ref)
            if not dataset.exists():
                raise NotFound(f"{ref} has no published version yet")
            _present(dataset, file)
            return dataset
        if self.principal is None:  # an anonymous store: what it holds, to anyone
            team, dot, name = ref.partition(".")
            dataset = self.store.dataset(ref)
            if not (dot and plain_path(team) and plain_path(name) and "/" not in ref
                    and dataset.exists()):
                raise NotFound(f"this store holds no dataset {ref!r}")
            _present(dataset, file)
            return dataset
        try:
            reason = clone_grant(request.app.state.context.index, self.principal, ref)
        except (Forbidden, NotFound):
            if audited is not None:
                get_auth(request).audit.record(self.principal.username, audited, f"dataset:{ref}",
                                               "denied", client_ip=client_ip(request))
            raise
        dataset = self.store.dataset(ref, pull=False)
        if dataset.remote is None or file is None or not (dataset.path / file).is_file():
            dataset = self.store.dataset(ref)
        _present(dataset, file)
        if not dataset.exists():
            raise NotFound(f"{ref} has no published version yet")
        request.state.clone_grant = reason
        return dataset


def _present(dataset: DatasetStore, file: str | None) -> None:
    """In a bucket, a data file to be served: fetched if the mirror lacks it (checked
    against its hash), pinned for the request either way."""
    if dataset.remote is not None and file is not None:
        dataset.remote.ensure_named(file)


def replication_reader(request: Request) -> Reader:
    """The reader of a replication request: anyone on an anonymous store, else the
    bearer token's user, if its token has the ``read`` scope, or a gateway agent
    (401/403 otherwise)."""
    anonymous = getattr(request.app.state, "replication_store", None)
    if anonymous is not None:
        return Reader(None, anonymous)
    context = request.app.state.context
    secret = presented_token(request)
    if secret is not None and secret.startswith("fa_"):  # a gateway agent's credential
        from dataferry.agent.registry import Agents
        from dataferry.errors import AuthError

        try:
            agent = Agents(context.metadata, get_auth(request).now).authenticate(secret)
        except AuthError as error:
            raise Unauthorized(str(error)) from None
        return Reader(None, context.store, agent.network)
    principal = authenticate(get_auth(request), secret, context.index)
    if principal is None:
        raise Unauthorized("the token is not valid (expired, revoked, or its user disabled): "
                           "create another with `ferry tokens create`" if secret else
                           "replication needs a token: send 'Authorization: Bearer <token>' "
                           "(ferry clone --token, or FERRY_TOKEN)")
    scopes.require_scope(principal, scopes.READ)
    return Reader(principal, context.store)


setattr(replication_reader, scopes.MARK, scopes.READ)
ReaderDependency = Annotated[Reader, Depends(replication_reader)]


@router.get(PREFIX + "/genesis")
def genesis(request: Request, reader: ReaderDependency, ref: str) -> Response:
    """The genesis bytes, exactly as stored: their hash is the dataset id."""
    dataset = reader.dataset(request, ref, audited="replication.fetch")
    return Response(dataset.genesis_path.read_bytes(), media_type="application/json")


@router.get(PREFIX + "/manifests")
def manifests(request: Request, reader: ReaderDependency, ref: str,
              start: Annotated[int, Query(alias="from", ge=1, le=2**31 - 1)] = 1
              ) -> dict[str, Any]:
    """Signed manifests from version ``from`` on (at most 500; ``more`` says whether
    there are others), each with its signature and the chunk lists of its files."""
    dataset = reader.dataset(request, ref, audited="replication.fetch")
    numbers = dataset.version_numbers()
    checkpoint = dataset.checkpoint_path
    first = numbers[0] if numbers else None
    wanted = [n for n in numbers if n >= start]
    page = wanted[:MANIFESTS_PER_PAGE]
    items = [_manifest_item(dataset, number) for number in page]
    head = numbers[-1] if numbers else None
    if reader.username is not None:
        get_auth(request).audit.record(
            reader.username, "replication.fetch", f"dataset:{ref}", "success",
            client_ip=client_ip(request),
            detail={"from": start, "head": head, "access": request.state.clone_grant})
    with_checkpoint = checkpoint.is_file() and first is not None and start <= first
    return {
        "dataset": ref,
        "head": head,
        "first": first,
        "checkpoint": checkpoint.read_text(encoding="utf-8") if with_checkpoint else None,
        "checkpoint_chunks": _chunk_lists(dataset, (f.hash for f in cp.files))
        if with_checkpoint and (cp := dataset.checkpoint()) is not None else {},
        "manifests": items,
        "more": len(wanted) > len(page),
    }


def _chunk_lists(dataset: DatasetStore, hashes: Iterable[str]) -> dict[str, str]:
    """file hash -> its chunk list, for the files that have one."""
    lists = {}
    for file_hash in hashes:
        path = dataset.chunks_path(file_hash)
        if path.is_file():
            lists[file_hash] = path.read_text(encoding="ascii")
    return lists


def _manifest_item(dataset: DatasetStore, number: int) -> dict[str, Any]:
    version = dataset.version(number)
    chunks = _chunk_lists(dataset, (entry.hash for entry in version.manifest.files))
    return {"version": number, "manifest": version.raw.decode("utf-8"),
            "signature": dataset.signature_path(number).read_text(encoding="utf-8"),
            "chunks": chunks}


@router.get(PREFIX + "/head")
async def head(request: Request, reader: ReaderDependency, ref: str,
               after: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
               wait: Annotated[float, Query(ge=0, le=LONGEST_WAIT)] = 0) -> dict[str, Any]:
    """The newest signed version; with ``after=N&wait=S``, answers as soon as there is
    a version past N, or after S seconds with the head as it is (long-poll)."""
    dataset = await run_in_threadpool(reader.dataset, request, ref)
    deadline = time.monotonic() + wait
    pulled = time.monotonic()
    while True:
        if dataset.remote is not None and time.monotonic() - pulled >= REMOTE_POLL_SECONDS:
            await run_in_threadpool(dataset.remote.pull)  # versions other hubs published
            pulled = time.monotonic()
        number = dataset.head_number()
        if after is None or (number is not None and number > after) or (
                time.monotonic() >= deadline) or await request.is_disconnected():
            break
        await asyncio.sleep(POLL_SECONDS)
    if number is None:
        return {"dataset": ref, "version": None, "hash": None}
    version = await run_in_threadpool(dataset.version, number)
    return {"dataset": ref, "version": number, "hash": version.hash}


@router.get(PREFIX + "/files/{path:path}")
def file(request: Request, reader: ReaderDependency, ref: str, path: str) -> Response:
    """A file of the dataset directory: data files, deletion vectors, Delta commits.
    Range requests get 206 (416 past the end); paths outside the dataset are refused."""
    dataset = reader.dataset(request, ref, file=path)
    return FileResponse(safe_path(dataset.path, path), media_type="application/octet-stream")


@router.head(PREFIX + "/files/{path:path}", include_in_schema=False)  # no body to walk
def file_head(request: Request, reader: ReaderDependency, ref: str, path: str) -> Response:
    """The headers ``GET files/<path>`` would send (its size, ``Accept-Ranges``)."""
    return file(request, reader, ref, path)


def safe_path(directory: Path, path: str) -> Path:
    """``directory/path`` if it is a plain file inside ``directory``: no ``..``, no hidden
    parts (locks, staging), no link out (400 or 404 otherwise)."""
    if not plain_path(path):
        raise BadRequest(f"file path {path!r} is refused: only plain paths inside the dataset "
                         "directory are served (no '..', no hidden files)")
    base = directory.resolve()
    target = (base / path).resolve()
    if not target.is_relative_to(base):
        raise BadRequest(f"file path {path!r} is refused: it leads outside the dataset")
    if not target.is_file():
        raise NotFound(f"the dataset has no file {path!r}")
    return target


def anonymous_app(store: Store) -> FastAPI:
    """``ferry serve --store DIR --anonymous``: the replication endpoints only, over
    ``store``, read-only, to anyone (no model, no users, no audit)."""
    app = FastAPI(title="dataferry replication", version=__version__,
                  openapi_url="/openapi.json", docs_url=None, redoc_url=None)
    app.state.replication_store = store
    app.add_middleware(PinPerRequest)
    install_error_handlers(app)
    app.include_router(router, prefix="/api/v1")
    return app
