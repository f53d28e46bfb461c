"""A dataset of an ``s3://`` store, kept in step with a local mirror.

The store's code reads and writes local files (deltalake, DuckDB, pyarrow and the hashing
all stream from them), so an S3 store works through a mirror of each dataset under
``<home>/s3/<bucket>/<prefix>``: ``pull`` brings the bucket's changes to the history
down (``_sig`` and ``_delta_log``); ``ensure`` the data files a command reads, on demand
(streamed to disk, never into memory, hashed against the manifest); ``commit`` sends a new
version up. The mirror is a cache bounded in size (``mirror_cache``): deleting it loses
nothing.

A version is committed by the conditional put of its manifest (``If-None-Match: *``):

1. the data files and deletion vectors the version adds are uploaded (their hashes
   checked against the manifest first; S3 checks each transfer's SHA-256), then the chunk
   lists, and the version's Delta commit under ``_sig/staged/`` (not yet in the Delta log);
2. the manifest is put only if no manifest of that version exists, with its signature
   and the staged commit's key in the object's metadata. This is the commit point: of two
   writers racing for one version exactly one wins; the other fails, nothing of it is
   visible, and gc later deletes what it uploaded;
3. the Delta commit is copied into ``_delta_log`` and the signature written beside the
   manifest. A crash between 2 and 3 is finished by the next ``pull`` from the manifest's
   metadata (the staged commit is checked against the manifest's hash first). A writer
   that is only slow finishes meanwhile and deletes the staged copy: the reader then takes
   the commit it put in ``_delta_log``, checked the same way.

Objects that arrive from the bucket are recorded with their ETag in an index beside the
mirror, so a changed object (a tampered file) is downloaded again and ``ferry verify``
sees the bucket's bytes, and one the bucket no longer has (gc on another machine) is
removed from the mirror.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dataferry.errors import StoreError
from dataferry.faults import crash_point, pause_point
from dataferry.store.hashing import file_hash, hash_bytes
from dataferry.store.manifest import Checkpoint, FileEntry, Genesis, Manifest, write_atomic
from dataferry.store.mirror_cache import MirrorCache
from dataferry.store.objects import ObjectInfo, ObjectStore

STAGED = "_sig/staged/"
_MANIFEST = re.compile(r"_sig/m/(\d{12})\.json")
_HISTORY = ("_sig/", "_delta_log/")
TRANSFERS = 8
"""Files downloaded or uploaded at once (boto3's pool has 10 connections)."""
ORPHAN_GRACE = 3600.0
"""Seconds before gc deletes an object no version names: younger ones may belong to a
publish still uploading on another machine."""
_SIGNATURE_META = "ferry-signature"
_STAGED_META = "ferry-delta-staged"


@dataclass
class RemoteDataset:
    """``<store>/<team>/<dataset>`` in a bucket, and its mirror at ``local``."""

    objects: ObjectStore
    ref: str
    local: Path
    index_path: Path

    cache: MirrorCache | None = None
    """The mirror's size bound and pins (None: unbounded, nothing pinned)."""

    def __post_init__(self) -> None:
        team, _, name = self.ref.partition(".")
        self.relative = f"{team}/{name}"
        self._index: dict[str, str] | None = None
        self._listing: dict[str, ObjectInfo] | None = None

    def key(self, relative: str) -> str:
        return self.objects.location.key(f"{self.relative}/{relative}")

    def url(self, relative: str) -> str:
        """The object's ``s3://`` address, to name it in messages."""
        return self.objects.location.url(f"{self.relative}/{relative}")

    # --- the index of what came from the bucket --------------------------------------

    @property
    def index(self) -> dict[str, str]:
        if self._index is None:
            try:
                self._index = dict(json.loads(self.index_path.read_text()))
            except (FileNotFoundError, ValueError):
                self._index = {}
        return self._index

    def _save_index(self) -> None:
        write_atomic(self.index_path, json.dumps(self.index, sort_keys=True).encode())

    # --- down -------------------------------------------------------------------------

    def listing(self) -> dict[str, ObjectInfo]:
        """The dataset's objects in the bucket, by path relative to the dataset."""
        prefix = self.objects.location.key(self.relative) + "/"
        return {info.key[len(prefix):]: info for info in self.objects.under(self.relative + "/")}

    def pull(self) -> None:
        """Bring the mirror in step with the bucket (what changed only)."""
        # The index as recorded before the listing: an entry a writer on this machine
        # records after it (an upload) is not taken for an object the bucket lost.
        self._index = None
        index = self.index
        listing = self.listing()
        history = {rel: info for rel, info in listing.items()
                   if rel.startswith(_HISTORY) and not rel.startswith(STAGED)}
        for rel, info in history.items():
            self._fetch(rel, info)
        for rel in sorted(history):
            match = _MANIFEST.fullmatch(rel)
            if match and f"_sig/m/{match.group(1)}.sig" not in listing:
                self._finish_commit(int(match.group(1)), listing)
        for rel in [r for r in index if r not in listing]:
            (self.local / rel).unlink(missing_ok=True)  # gone from the bucket (gc)
            del index[rel]
        self._listing = listing
        self._save_index()

    # --- data files, on demand --------------------------------------------------------

    def ensure(self, entries: Iterable[FileEntry], *, check: bool = True) -> set[str]:
        """Make the data files (and deletion vectors) of ``entries`` present in the
        mirror as the bucket holds them, pinned for the command in flight
        (``mirror_cache``); what is missing or changed in the bucket is downloaded, and
        (``check``) hashed against its entry: a file whose bytes are not the ones signed
        for is refused, naming the object. Returns the paths newly pinned (``release``)."""
        wanted: dict[str, str | None] = {}
        for entry in entries:
            wanted[entry.path] = entry.hash
            vector = entry.deletion_vector
            if vector:
                wanted.setdefault(str(vector["file"]), None)
        if not wanted:
            return set()
        fresh = self.cache.pin(self.local / rel for rel in wanted) if self.cache else set()
        index = self.index
        stale = [rel for rel in sorted(wanted)
                 if not (self.local / rel).is_file() or rel not in index
                 or (self._listing is not None and rel in self._listing
                     and self._listing[rel].etag != index[rel])]
        if stale:
            if self._listing is None or any(rel not in self._listing for rel in stale):
                self._listing = self.listing()
            listing = self._listing
            todo = [rel for rel in stale if rel in listing
                    and (index.get(rel) != listing[rel].etag
                         or not (self.local / rel).is_file())]
            algorithm = self._algorithm() if check and todo else ""

            def fetch(rel: str) -> str:
                target = self.local / rel
                self.objects.download(listing[rel].key, target)
                expected = wanted[rel]
                if check and expected is not None and \
                        file_hash(target, algorithm)[0] != expected:
                    target.unlink(missing_ok=True)
                    raise StoreError(f"{self.ref}: {self.url(rel)}: content does not match "
                                     "its hash (the file was changed in the bucket); it is "
                                     f"not read; run `ferry verify {self.ref}`", public=True)
                return listing[rel].etag

            with ThreadPoolExecutor(TRANSFERS) as pool:
                for rel, etag in zip(todo, pool.map(fetch, todo), strict=True):
                    index[rel] = etag
            if todo:
                self._save_index()
        else:
            todo = []
        if self.cache is not None:
            for rel in wanted:
                self.cache.touch(self.local / rel)
            if todo:  # only downloads make the mirror grow past its bound
                self.cache.trim()
        return fresh

    def release(self, pinned: set[str]) -> None:
        """Unpin what ``ensure`` newly pinned (done with it)."""
        if self.cache is not None:
            self.cache.unpin(pinned)

    def ensure_named(self, rel: str) -> None:
        """Make a file of the dataset present for serving it: a data file a kept version
        names is fetched (``ensure``); anything else is history, in step after ``pull``."""
        for entry in self._entries():
            vector = entry.deletion_vector
            if entry.path == rel or (vector and str(vector["file"]) == rel):
                self.ensure([entry])
                return

    def _fetch(self, rel: str, info: ObjectInfo, record: bool = True) -> str | None:
        """Download an object unless the mirror has it as the bucket does; returns the
        ETag of what it downloaded (recorded in the index unless ``record`` is False)."""
        target = self.local / rel
        if self.index.get(rel) == info.etag and target.is_file():
            return None
        self.objects.download(info.key, target)
        if record:
            self.index[rel] = info.etag
        return info.etag

    def _entries(self) -> list[FileEntry]:
        """The file entries of every kept version and of the checkpoint."""
        manifests = self.local / "_sig" / "m"
        entries: list[FileEntry] = []
        for path in sorted(manifests.glob("*.json")) if manifests.is_dir() else ():
            try:
                entries.extend(Manifest.from_bytes(path.read_bytes()).files)
            except (ValueError, KeyError, TypeError):
                continue  # verify names an unreadable manifest
        checkpoint = self.local / "_sig" / "checkpoint.json"
        if checkpoint.is_file():
            try:
                from dataferry.store.manifest import read_signed_checkpoint

                found: Checkpoint = read_signed_checkpoint(checkpoint.read_bytes())[0]
                entries.extend(found.files)
            except (ValueError, KeyError, TypeError):
                pass
        return entries

    def _finish_commit(self, number: int, listing: dict[str, ObjectInfo]) -> None:
        """Step 3 of a commit whose writer stopped after its manifest (module doc)."""
        manifest_rel = f"_sig/m/{number:012d}.json"
        metadata = self.objects.metadata(self.key(manifest_rel)) or {}
        if _SIGNATURE_META not in metadata:
            return  # not written by a commit: verify reports the unsigned manifest
        raw = (self.local / manifest_rel).read_bytes()
        manifest = Manifest.from_bytes(raw)
        delta = manifest.delta_commit
        delta_rel = f"_delta_log/{int(delta['version']):020d}.json"
        if delta_rel not in listing:
            staged = metadata.get(_STAGED_META, "")
            data = self.objects.get(self.key(staged)) if staged else None
            if data is None:
                # Its writer may have finished since the listing: it puts the commit in
                # the Delta log, then deletes the staged copy.
                data = self.objects.get(self.key(delta_rel))
            if data is None or hash_bytes(self._algorithm(), data) != delta["hash"]:
                raise StoreError(f"{self.ref} version {number}: its Delta commit is not in "
                                 f"{self.url(delta_rel)} and the staged copy is missing or "
                                 "altered; the version cannot be completed (ferry verify "
                                 "names it)", public=True)
            self._put_if_allowed(delta_rel, data)
            write_atomic(self.local / delta_rel, data)
        signature = base64.b64decode(metadata[_SIGNATURE_META])
        self._put_if_allowed(f"_sig/m/{number:012d}.sig", signature)
        write_atomic(self.local / f"_sig/m/{number:012d}.sig", signature)

    def _put_if_allowed(self, rel: str, data: bytes) -> None:
        """Finish a commit in the bucket too, when these credentials may write there (a
        reader's may not: its mirror is completed all the same, and the next writer's
        pull completes the bucket)."""
        with suppress(StoreError):
            self.objects.put(self.key(rel), data, if_absent=True)

    def _algorithm(self) -> str:
        return Genesis.from_bytes((self.local / "_sig" / "genesis.json").read_bytes()).algorithm

    # --- up ---------------------------------------------------------------------------

    def create_genesis(self, data: bytes) -> bytes:
        """Put the dataset's genesis unless another writer did first; the one that holds."""
        rel = "_sig/genesis.json"
        self.objects.require_conditional_puts()  # nothing at all goes where it is ignored
        if self.objects.put(self.key(rel), data, if_absent=True) is None:
            won = self.objects.get(self.key(rel))
            if won is None:
                raise StoreError(f"{self.ref}: {self.url(rel)} could not be written or "
                                 "read; run again", public=True)
            data = won
        write_atomic(self.local / rel, data)
        self.index[rel] = ""  # fetched again once: the index learns its ETag
        self._save_index()
        return data

    def commit(self, manifest: Manifest, raw: bytes, signature: bytes,
               chunk_lists: list[tuple[str, bytes]], algorithm: str) -> None:
        """Send a signed version up; raises if another writer committed it first."""
        self.objects.require_conditional_puts()
        number = manifest.version
        index = self.index
        uploads: dict[str, str | None] = {}  # path -> the hash it must have (None: a vector)
        for entry in manifest.files:
            if entry.path not in index:
                uploads[entry.path] = entry.hash
            vector = entry.deletion_vector
            if vector and str(vector["file"]) not in index:
                uploads[str(vector["file"])] = None

        def upload(rel: str) -> tuple[str, str]:
            local = self.local / rel
            expected = uploads[rel]
            if expected is not None and file_hash(local, algorithm)[0] != expected:
                raise StoreError(f"{self.ref} version {number}: {rel} changed after it was "
                                 "hashed; nothing was published", public=True)
            return rel, self.objects.upload(local, self.key(rel))

        with ThreadPoolExecutor(TRANSFERS) as pool:
            for rel, etag in pool.map(upload, sorted(uploads)):
                index[rel] = etag
        for file_hash_, data in chunk_lists:
            rel = f"_sig/c/{file_hash_}.chunks"
            index[rel] = self.objects.put(self.key(rel), data) or ""
        delta_rel = f"_delta_log/{int(manifest.delta_commit['version']):020d}.json"
        delta_raw = (self.local / delta_rel).read_bytes()
        staged = f"{STAGED}{number:012d}-{uuid.uuid4().hex}.json"
        self.objects.put(self.key(staged), delta_raw)
        pause_point("before-manifest-put")
        crash_point("before-manifest-put")
        manifest_rel = f"_sig/m/{number:012d}.json"
        committed = self.objects.put(self.key(manifest_rel), raw, if_absent=True, metadata={
            _SIGNATURE_META: base64.b64encode(signature).decode(), _STAGED_META: staged})
        if committed is None:
            self._save_index()  # what was uploaded stays known; gc removes it later
            lost = StoreError(f"{self.ref}: another writer published version {number} first "
                              f"({self.url(manifest_rel)}); nothing of this attempt was "
                              "published; run again to publish on top of it", public=True)
            lost.transient = True
            raise lost
        index[manifest_rel] = committed
        crash_point("after-manifest-put")
        for rel, data in ((delta_rel, delta_raw), (f"_sig/m/{number:012d}.sig", signature)):
            index[rel] = self.objects.put(self.key(rel), data, if_absent=True) or ""
        self.objects.delete([self.key(staged)])
        self._save_index()
        if self.cache is not None:  # the version's files are in the bucket: evictable
            self.cache.trim()

    def push_checkpoint(self, data: bytes) -> None:
        rel = "_sig/checkpoint.json"
        self.index[rel] = self.objects.put(self.key(rel), data) or ""
        self._save_index()

    def delete(self, relatives: Iterable[str]) -> None:
        """Delete objects of the dataset (gc), and forget them in the index."""
        rels = sorted(set(relatives))
        self.objects.delete([self.key(rel) for rel in rels])
        for rel in rels:
            self.index.pop(rel, None)
        self._save_index()

    def collect(self, dropped: list[int], deleted: list[str], needed: set[str],
                hashes: set[str], grace: float) -> list[str]:
        """gc in the bucket, after gc in the mirror: the checkpoint first (the chain
        restarts there), then the dropped versions' manifests and the files gc deleted,
        then objects no kept version names (uploads of attempts that lost or crashed, and
        their chunk lists and staged commits) once ``grace`` seconds old. Returns the
        paths of those orphans."""
        checkpoint = self.local / "_sig" / "checkpoint.json"
        if dropped and checkpoint.is_file():
            self.push_checkpoint(checkpoint.read_bytes())
        listing = self.listing()
        old = datetime.now(UTC) - timedelta(seconds=grace)
        gone = {f"_sig/m/{n:012d}.{suffix}" for n in dropped for suffix in ("json", "sig")}
        gone.update(deleted)
        orphans: list[str] = []
        for rel, info in listing.items():
            if rel in gone or info.modified > old:
                continue
            if rel.startswith(STAGED):
                orphans.append(rel)
            elif rel.startswith("_sig/c/") and rel.endswith(".chunks"):
                if rel[len("_sig/c/"):-len(".chunks")] not in hashes:
                    orphans.append(rel)
            elif not rel.startswith(_HISTORY) and rel not in needed and _is_data(rel):
                orphans.append(rel)
        self.delete([rel for rel in gone if rel in listing] + orphans)
        for rel in orphans:
            (self.local / rel).unlink(missing_ok=True)
        return [rel for rel in orphans if not rel.startswith("_sig/")]


def _is_data(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return name.endswith(".parquet") or (name.startswith("deletion_vector_")
                                         and name.endswith(".bin"))
