"""The client side of the protocol: one peer, asked for one dataset.

Nothing a peer answers is trusted here: ``sync`` verifies every byte. This module only
turns HTTP into bytes and HTTP failures into one-line errors (a 403 carries the server's
reason; the token never appears in a message).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlsplit

import httpx

from dataferry.errors import AuthError, FerryError, StoreError, UsageError
from dataferry.store.hashing import Chunker

API = "/api/v1/replication"
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
READ_SIZE = 1 << 20


class PeerUnreachable(FerryError):
    """The peer could not be reached or failed (worth retrying later)."""

    transient = True


def split_url(url: str) -> tuple[str, str]:
    """``http://HOST:PORT/<team>.<dataset>`` -> (``http://HOST:PORT``, ``team.dataset``)."""
    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/")
    base_path, _, ref = path.rpartition("/")
    team, dot, name = ref.partition(".")
    if parts.scheme not in ("http", "https") or not parts.netloc or not dot or not team \
            or not name or "." in name:
        raise UsageError(f"{url!r} is not a dataset's address: write "
                         "http://HOST:PORT/<team>.<dataset>")
    return f"{parts.scheme}://{parts.netloc}{base_path}", ref


class Peer:
    """One peer serving ``ref`` at ``origin`` (``http://HOST:PORT``)."""

    def __init__(self, origin: str, ref: str, token: str | None = None) -> None:
        self.origin = origin.rstrip("/")
        self.ref = ref
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # httpx builds a TLS context (reading the CA bundle: ~40 ms) for every client; a
        # plain http:// peer never uses one, and no redirect is followed to an https one.
        tls = self.origin.startswith("https:")
        self._client = httpx.Client(base_url=f"{self.origin}{API}/{quote(ref)}",
                                    headers=headers, timeout=TIMEOUT, verify=tls)
        self.bytes_fetched = 0

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def name(self) -> str:
        return f"{self.origin}/{self.ref}"

    def genesis(self) -> bytes:
        return self._get("/genesis").content

    def manifest_pages(self, start: int) -> Iterator[dict[str, Any]]:
        """The ``manifests`` answers from version ``start`` on, page after page."""
        while True:
            page = self._json(self._get("/manifests", params={"from": start}))
            yield page
            items = page.get("manifests") or []
            if not page.get("more") or not items:
                return
            start = int(items[-1]["version"]) + 1

    def head(self, after: int | None = None, wait: float = 0) -> dict[str, Any]:
        params: dict[str, Any] = {"wait": wait} if after is None else {"after": after,
                                                                         "wait": wait}
        return self._json(self._get("/head", params=params, timeout=wait + 30))

    def download(self, path: str, target: Path, size: int,
                 hasher: Chunker | None = None) -> int:
        """Fetch file ``path`` into ``target``, going on from the bytes ``target`` already
        holds (an interrupted download: one Range request for the rest). Returns the
        bytes fetched; stops at ``size`` bytes (a peer sending more is cut off).
        ``hasher``, a fresh ``Chunker``, is fed every byte ``target`` ends up holding, as
        it is written (no second pass over the file)."""
        have = target.stat().st_size if target.exists() else 0
        if have > size:
            target.unlink()
            have = 0
        if have == size:
            return 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        fetched = 0
        try:
            with self._client.stream("GET", f"/files/{quote(path)}", headers=headers) as answer:
                if answer.status_code == 416 and have:  # it had every byte already
                    return 0
                if answer.status_code >= 400:
                    answer.read()
                    self._raise(answer)
                if have and answer.status_code != 206:  # no Range support: start over
                    have = 0
                with target.open("r+b" if have else "wb") as handle:
                    if hasher is not None and have:
                        _feed(hasher, handle, have)
                    handle.seek(have)
                    handle.truncate()
                    for block in answer.iter_bytes(READ_SIZE):
                        block = block[: size - have - fetched]
                        handle.write(block)
                        if hasher is not None:
                            hasher.update(block)
                        fetched += len(block)
                        if have + fetched >= size:
                            break
                    handle.flush()
                    os.fsync(handle.fileno())  # on disk before a signature can name it
        except httpx.HTTPError as exc:
            raise PeerUnreachable(f"peer {self.name}: fetching {path} failed ({exc}); "
                                  "run the command again to go on where it stopped") from None
        finally:
            self.bytes_fetched += fetched
        return fetched

    def read_range(self, path: str, start: int, end: int) -> bytes:
        """Bytes ``start``..``end`` (exclusive) of file ``path``, by one Range request."""
        answer = self._get(f"/files/{quote(path)}",
                           headers={"Range": f"bytes={start}-{end - 1}"})
        if answer.status_code != 206 and len(answer.content) != end - start:
            raise StoreError(f"peer {self.name} answered no byte range for {path}: it cannot "
                             "serve a clone with --columns")
        return answer.content[: end - start]

    def _get(self, path: str, **options: Any) -> httpx.Response:
        try:
            answer = self._client.get(path, **options)
        except httpx.HTTPError as exc:
            raise PeerUnreachable(f"cannot reach peer {self.origin}: {exc}") from None
        if answer.status_code >= 400:
            self._raise(answer)
        self.bytes_fetched += len(answer.content)
        return answer

    def _json(self, answer: httpx.Response) -> dict[str, Any]:
        try:
            value = answer.json()
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise StoreError(f"peer {self.name}: {answer.request.url.path} did not answer "
                             "with a JSON object; is it a dataferry server?")
        return value

    def _raise(self, answer: httpx.Response) -> None:
        try:
            message = str(json.loads(answer.content)["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = answer.text[:200].strip() or answer.reason_phrase
        status = answer.status_code
        if status == 401:
            raise AuthError(f"peer {self.origin} wants a token for {self.ref}: pass --token "
                            f"or set FERRY_TOKEN ({message})")
        if status == 403:
            raise AuthError(f"peer {self.origin} refused {self.ref}: {message}")
        if status == 404:
            raise StoreError(f"peer {self.origin}: {message}")
        if status >= 500:
            raise PeerUnreachable(f"peer {self.origin} failed ({status}): {message}")
        raise StoreError(f"peer {self.origin} answered {status}: {message}")


def _feed(hasher: Chunker, handle: IO[bytes], length: int) -> None:
    """Feed ``hasher`` the first ``length`` bytes of ``handle`` (a resumed download's)."""
    handle.seek(0)
    while length > 0:
        block = handle.read(min(READ_SIZE, length))
        if not block:
            break
        hasher.update(block)
        length -= len(block)
