"""Clone or pull one dataset from a peer: every byte verified before it is visible.

The order (docs/replication.md):

1. the genesis: it must hash to the id the clone already holds, or to ``--key``, else
   it is trusted on first use;
2. the peer's head must not be behind the clone's, and its manifest for the clone's
   head must be the one the clone holds (else: rolled back, or a fork);
3. each newer manifest: signed by a key the genesis (or an earlier signed rotation)
   allows, its ``prev`` the hash of the one before, its chunk lists as signed;
4. its files are fetched into ``_sig/.incoming`` (a partial download goes on with a
   Range request) and checked there: size, hash and chunk hashes of data files, every
   deletion vector's bytes, the Delta commit's hash;
5. only then the version is made visible: files moved into place, chunk lists, the
   Delta commit, the manifest, and its signature last (a version exists when its
   signature does, as for a local publish).

A peer that serves anything else is named in one line (``PeerError``); what the clone
held before stays as it was, and staged files that verified stay for the next run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from dataferry.errors import StoreError, VerificationError
from dataferry.replication.columns import ChunkMismatch, fetch_columns
from dataferry.replication.origin import Origin, write_origin
from dataferry.replication.paths import plain_path
from dataferry.replication.peer import Peer
from dataferry.store import deletion_vectors
from dataferry.store.dataset import DatasetStore, Version
from dataferry.store.deletion_vectors import DeletionVector
from dataferry.store.delta_filler import fill_log
from dataferry.store.hashing import chunker, file_hash, hash_bytes, hash_file
from dataferry.store.keys import fingerprint, verify_signature
from dataferry.store.manifest import (
    FileEntry,
    Genesis,
    Manifest,
    Signature,
    fsync_dir,
    read_signed_checkpoint,
    write_atomic,
)
from dataferry.store.sparse import Sparse, read_sparse, write_held, write_sparse

INCOMING = ".incoming"
DELTA_COMMIT_LIMIT = 256 << 20
"""The most bytes fetched for one Delta commit (its size is not signed, its hash is)."""


class PeerError(VerificationError):
    """A peer served something that does not verify: named in one line."""


@dataclass
class SyncResult:
    """What one clone or pull of a dataset did (``--json``)."""

    dataset: str
    origin: str
    dataset_id: str = ""
    trust: str = "known"
    """``pinned`` (--key), ``first use`` (a new clone without --key) or ``known``."""
    before: int | None = None
    head: int | None = None
    versions: list[int] = field(default_factory=list)
    files_fetched: int = 0
    files_reused: int = 0
    bytes_fetched: int = 0
    """Every byte the peer sent (answers and files)."""

    def as_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "origin": self.origin, "dataset_id": self.dataset_id,
                "trust": self.trust, "before": self.before, "head": self.head,
                "versions": self.versions, "files_fetched": self.files_fetched,
                "files_reused": self.files_reused, "bytes_fetched": self.bytes_fetched}


def sync(peer: Peer, dataset: DatasetStore, *, pinned: str | None = None,
         up_to: int | None = None, columns: list[str] | None = None) -> SyncResult:
    """Bring ``dataset`` (a clone, or nothing yet) up to the peer's head (or ``up_to``).

    A new clone with ``up_to`` holds only that version's files, with ``columns`` only
    those columns' chunks (and the primary key's): a sparse clone (``store/sparse.py``).
    """
    result = SyncResult(dataset.ref, peer.origin)
    received = peer.bytes_fetched
    raw_genesis = peer.genesis()  # before the lock makes a directory: a refusal leaves none
    with dataset.lock():
        try:
            _Sync(peer, dataset, result).run(raw_genesis, pinned, up_to, columns)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            # An answer of the wrong shape (checked fields are checked where they are read)
            raise PeerError(f"peer {peer.origin} sent an answer of the wrong shape for "
                            f"{dataset.ref} ({type(exc).__name__}: {exc}); pull from "
                            "another peer") from None
        finally:
            result.bytes_fetched = peer.bytes_fetched - received
    return result


class _Sync:
    def __init__(self, peer: Peer, dataset: DatasetStore, result: SyncResult) -> None:
        self.peer = peer
        self.dataset = dataset
        self.result = result
        self.incoming = dataset.sig / INCOMING
        self.local: Version | None = None
        self.held: set[tuple[str, str]] = set()
        """(path, hash) of every file a verified version here lists."""
        self.sparse: Sparse | None = None
        self.last_delta: int | None = None
        """The Delta version of the last signed commit here (fillers go between)."""
        self.held_chunks: dict[str, list[int]] = {}
        """Chunks fetched of each file of a column-sparse clone, not yet recorded."""

    def bad(self, text: str) -> PeerError:
        held = self.dataset.head_number() if self.dataset.exists() else None
        keeps = f"version {held}" if held is not None else "nothing"
        return PeerError(f"peer {self.peer.origin} {text}; {self.dataset.ref} keeps {keeps} "
                         "here, verified: pull from another peer")

    # --- the chain -------------------------------------------------------------------

    def run(self, raw_genesis: bytes, pinned: str | None, up_to: int | None,
            columns: list[str] | None) -> None:
        dataset, result = self.dataset, self.result
        genesis = self.genesis(raw_genesis)
        result.dataset_id = dataset_id = genesis.dataset_id
        if dataset.exists():
            local_id = dataset.genesis().dataset_id
            if local_id != dataset_id:
                raise self.bad(f"serves another dataset as {dataset.ref}: its genesis hashes "
                               f"to {dataset_id}, the one here to {local_id}")
            self.local = dataset.head()
        elif pinned is not None and pinned != dataset_id:
            raise self.bad(f"serves a genesis that hashes to {dataset_id}, not to the "
                           f"pinned --key {pinned}")
        else:
            result.trust = "pinned" if pinned is not None else "first use"
        local = self.local
        self.held = self.held_files()
        if local is not None:
            self.last_delta = int(local.manifest.delta_commit.get("version") or 0)
        result.before = result.head = local.number if local else None
        allowed = self.local_keys(genesis)
        prev = local.hash if local else None
        carried: list[FileEntry] = []
        checkpoint_raw: bytes | None = None
        expected = local.number + 1 if local else 1
        first_page = True
        peer_head: int | None = None
        self.sparse = read_sparse(dataset.sig) if dataset.exists() else None
        sparse = self.sparse.version if self.sparse else None
        active: dict[str, FileEntry] = (
            {f.path: f for f in dataset.active_files(local.number)} if local else {})
        for page in self.peer.manifest_pages(local.number if local else 1):
            items = list(page.get("manifests") or [])
            if first_page:
                first_page = False
                peer_head = page.get("head")
                if local is not None:
                    self.check_not_behind(peer_head, items, allowed)
                    items = items[1:]
                elif page.get("first") not in (None, 1):
                    checkpoint_raw, prev, allowed, carried, expected = self.checkpoint(
                        page, genesis, items)
                    active = {f.path: f for f in carried}
                if local is None and up_to is not None and isinstance(peer_head, int):
                    sparse = min(up_to, peer_head)  # --version N: only N's files
                if local is None and (sparse is not None or columns is not None):
                    self.sparse = Sparse(sparse, tuple(columns) if columns else None)
            for item in items:
                number = int(item.get("version", 0))
                if up_to is not None and number > up_to:
                    break
                manifest, raw, signature = self.check_manifest(item, expected, prev, allowed,
                                                               dataset_id)
                if not dataset.exists():
                    if self.sparse is not None and self.sparse.columns is not None:
                        self.sparse = Sparse(sparse, held_columns(manifest, self.sparse.columns))
                    write_atomic(dataset.genesis_path, raw_genesis)
                    write_origin(dataset, Origin(self.peer.origin, dataset.ref, dataset_id))
                    if self.sparse is not None:  # before any version it holds part of
                        write_sparse(dataset.sig, self.sparse)
                if checkpoint_raw is not None:
                    write_atomic(dataset.checkpoint_path, checkpoint_raw)
                    checkpoint_raw = None
                for path in manifest.removed:
                    active.pop(path, None)
                active.update((f.path, f) for f in [*carried, *manifest.files])
                if sparse is not None and number < sparse:
                    self.apply_chain(manifest, raw, signature, item, carried)
                elif sparse is not None and number == sparse:
                    listed = {f.path for f in manifest.files}
                    self.apply(manifest, raw, signature, item,
                               [f for f in active.values() if f.path not in listed])
                else:
                    self.apply(manifest, raw, signature, item, carried)
                carried = []
                prev = hash_bytes(genesis.algorithm, raw)
                if manifest.keys is not None:
                    allowed = set(manifest.keys)
                expected = number + 1
                result.versions.append(number)
                result.head = number
        if not dataset.exists():  # a dataset with no version yet: the genesis alone
            write_atomic(dataset.genesis_path, raw_genesis)
            write_origin(dataset, Origin(self.peer.origin, dataset.ref, dataset_id))
        wanted = peer_head if up_to is None or peer_head is None else min(up_to, peer_head)
        if wanted is not None and (result.head or 0) < wanted:
            raise self.bad(f"says its head is version {peer_head} but sent manifests only up "
                           f"to version {result.head}")
        shutil.rmtree(self.incoming, ignore_errors=True)

    def genesis(self, raw: bytes) -> Genesis:
        try:
            genesis = Genesis.from_bytes(raw)
        except (ValueError, KeyError, TypeError, StoreError) as exc:
            raise self.bad(f"serves an unreadable genesis ({exc})") from None
        if genesis.to_bytes() != raw or genesis.dataset != self.dataset.ref:
            raise self.bad(f"serves a genesis that is not {self.dataset.ref}'s (not canonical, "
                           "or another dataset's)")
        return genesis

    def local_keys(self, genesis: Genesis) -> set[str]:
        """The keys allowed to sign the version after the clone's head."""
        checkpoint = self.dataset.checkpoint()
        allowed = set(checkpoint.keys if checkpoint else genesis.keys)
        for version in self.dataset.versions():
            if version.manifest.keys is not None:
                allowed = set(version.manifest.keys)
        return allowed

    def check_not_behind(self, peer_head: Any, items: list[dict[str, Any]],
                         allowed: set[str]) -> None:
        """The peer holds at least the clone's head, and the same manifest for it."""
        local = self.local
        assert local is not None
        if not isinstance(peer_head, int) or peer_head < local.number:
            raise self.bad(f"is rolled back: its head is version {peer_head}, but version "
                           f"{local.number} is verified here already (a stale or lying peer)")
        if not items or items[0].get("version") != local.number:
            raise self.bad(f"no longer serves version {local.number} (ferry gc dropped it "
                           "there?), so its newer versions cannot be linked to the ones here")
        raw = str(items[0].get("manifest", "")).encode("utf-8")
        if raw != local.raw:
            signed = self.signed_by(items[0], raw, allowed)
            raise self.bad(
                f"serves a fork: another signed manifest for version {local.number} than the "
                "one verified here (two histories signed by the team's key)" if signed else
                f"serves a forged manifest for version {local.number}: it differs from the one "
                "verified here and its signature does not verify")

    @staticmethod
    def signed_by(item: dict[str, Any], raw: bytes, allowed: set[str]) -> bool:
        try:
            signature = Signature.from_bytes(str(item["signature"]).encode("utf-8"))
        except (ValueError, KeyError, TypeError):
            return False
        return signature.key in allowed and verify_signature(signature.key, raw,
                                                             signature.signature)

    def checkpoint(self, page: dict[str, Any], genesis: Genesis, items: list[dict[str, Any]]
                   ) -> tuple[bytes, str | None, set[str], list[FileEntry], int]:
        """A peer whose oldest versions ``ferry gc`` dropped: the clone starts from its
        signed checkpoint, and fetches the files older versions added that are still read."""
        text = page.get("checkpoint")
        if not isinstance(text, str) or not items:
            raise self.bad(f"starts at version {page.get('first')} without a checkpoint")
        raw = text.encode("utf-8")
        try:
            checkpoint, body, signature = read_signed_checkpoint(raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise self.bad(f"serves an unreadable checkpoint ({exc})") from None
        if signature.key not in genesis.keys or not verify_signature(
                signature.key, body, signature.signature):
            raise self.bad("serves a checkpoint whose signature does not verify")
        if checkpoint.dataset_id != genesis.dataset_id or checkpoint.first_version != page.get(
                "first"):
            raise self.bad("serves a checkpoint of another dataset or another version")
        listed = page.get("checkpoint_chunks")
        if isinstance(listed, dict) and isinstance(items[0].get("chunks"), dict):
            items[0]["chunks"] = {**listed, **items[0]["chunks"]}
        try:
            removed = set(Manifest.from_bytes(str(items[0]["manifest"]).encode()).removed)
        except (ValueError, KeyError, TypeError, StoreError) as exc:
            raise self.bad(f"serves an unreadable manifest ({exc})") from None
        carried = [f for f in checkpoint.files if f.path not in removed]
        if not all(plain_path(f.path) and _is_hex(f.hash) and f.hash for f in carried):
            raise self.bad("serves a checkpoint naming a file that is not a plain path "
                           "inside the dataset")
        return raw, checkpoint.prev, set(checkpoint.keys), carried, checkpoint.first_version

    def check_manifest(self, item: dict[str, Any], expected: int, prev: str | None,
                       allowed: set[str], dataset_id: str
                       ) -> tuple[Manifest, bytes, Signature]:
        number = item.get("version")
        raw = str(item.get("manifest", "")).encode("utf-8")
        try:
            manifest = Manifest.from_bytes(raw)
            signature = Signature.from_bytes(str(item["signature"]).encode("utf-8"))
        except (ValueError, KeyError, TypeError, StoreError) as exc:
            raise self.bad(f"serves an unreadable manifest or signature for version {number} "
                           f"({exc})") from None
        if number != expected or manifest.version != expected:
            raise self.bad(f"sent version {manifest.version} where version {expected} comes "
                           "next (a gap in the chain)")
        if manifest.dataset != self.dataset.ref or manifest.dataset_id != dataset_id:
            raise self.bad(f"serves a manifest of another dataset as version {expected}")
        if signature.key not in allowed:
            key = fingerprint(bytes.fromhex(signature.key)) if _is_hex(signature.key) else "?"
            raise self.bad(f"serves version {expected} signed by key {key}, which the "
                           "dataset's genesis does not allow (a forged or re-signed manifest)")
        if not verify_signature(signature.key, raw, signature.signature):
            raise self.bad(f"serves a forged manifest for version {expected}: its signature "
                           "does not verify (the manifest was changed after it was signed)")
        if manifest.prev != prev:
            raise self.bad(f"serves a version {expected} that does not follow version "
                           f"{expected - 1} (its prev is another manifest's hash): a fork")
        for name in [*(f.path for f in manifest.files), *manifest.removed, *(
                str(f.deletion_vector["file"]) for f in manifest.files if f.deletion_vector)]:
            if not plain_path(name):
                raise self.bad(f"serves a version {expected} naming the file {name!r}, which "
                               "is not a plain path inside the dataset; nothing is written")
        if not all(_is_hex(f.hash) and f.hash for f in manifest.files):
            raise self.bad(f"serves a version {expected} with a file hash that is not hex")
        return manifest, raw, signature

    # --- one version's files ---------------------------------------------------------

    def chunk_lists(self, number: int, entries: Iterable[FileEntry], item: dict[str, Any]
                    ) -> dict[str, bytes]:
        """The chunk list of each file (sent, or held here), checked against its signed
        ``chunks_hash``."""
        lists: dict[str, bytes] = {}
        chunks = item.get("chunks") or {}
        for entry in entries:
            listed = chunks.get(entry.hash)
            if not isinstance(listed, str):
                local = self.dataset.chunks_path(entry.hash)
                listed = local.read_text(encoding="ascii") if local.is_file() else ""
            chunk_bytes = listed.encode("ascii", errors="replace")
            if hash_bytes(self.dataset.algorithm, chunk_bytes) != entry.chunks_hash:
                raise self.bad(f"serves a chunk list for {entry.path} (version {number}) that "
                               "does not match its signed chunks_hash")
            lists[entry.hash] = chunk_bytes
        return lists

    def apply_chain(self, manifest: Manifest, raw: bytes, signature: Signature,
                    item: dict[str, Any], carried: list[FileEntry]) -> None:
        """A version before a sparse clone's first: its signed manifest, chunk lists and
        Delta commit (the chain and the Delta log stay whole), none of its files."""
        self.incoming.mkdir(parents=True, exist_ok=True)
        lists = self.chunk_lists(manifest.version, [*carried, *manifest.files], item)
        staged, target = self.fetch_delta_commit(manifest)
        self.fill_delta(manifest)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, target)
        fsync_dir(target.parent)
        for file_hash_, data in lists.items():
            if not self.dataset.chunks_path(file_hash_).is_file():
                write_atomic(self.dataset.chunks_path(file_hash_), data)
        write_atomic(self.dataset.manifest_path(manifest.version), raw)
        write_atomic(self.dataset.signature_path(manifest.version), signature.to_bytes())

    def apply(self, manifest: Manifest, raw: bytes, signature: Signature, item: dict[str, Any],
              carried: list[FileEntry]) -> None:
        """Fetch and check every file the version needs, then make it visible."""
        dataset = self.dataset
        number = manifest.version
        self.incoming.mkdir(parents=True, exist_ok=True)
        moves: list[tuple[Path, Path]] = []
        held = self.held
        chunk_lists = self.chunk_lists(number, [*carried, *manifest.files], item)
        for entry in [*carried, *manifest.files]:
            chunk_bytes = chunk_lists[entry.hash]
            if self.is_held(entry, held):
                self.result.files_reused += 1
                continue
            if self.sparse is not None and self.sparse.columns is not None:
                staged = self.fetch_columns(number, entry, chunk_bytes, self.sparse.columns)
            else:
                staged = self.fetch_file(number, entry, chunk_bytes)
            moves.append((staged, dataset.path / entry.path))
        moves += self.fetch_vectors(number, [*carried, *manifest.files])
        moves.append(self.fetch_delta_commit(manifest))
        self.fill_delta(manifest)
        for staged, target in moves:  # nothing is visible until the signature exists
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
        for directory in {target.parent for _, target in moves}:
            fsync_dir(directory)
        for file_hash_, data in chunk_lists.items():
            if not dataset.chunks_path(file_hash_).is_file():
                write_atomic(dataset.chunks_path(file_hash_), data)
        for file_hash_, numbers in self.held_chunks.items():
            write_held(dataset.sig, file_hash_, numbers)
        self.held_chunks.clear()
        write_atomic(dataset.manifest_path(number), raw)
        write_atomic(dataset.signature_path(number), signature.to_bytes())
        held |= {(f.path, f.hash) for f in [*carried, *manifest.files]}

    def fill_delta(self, manifest: Manifest) -> None:
        """Unsigned filler commits below the version's signed one, where the clone's log
        would start late (a gc checkpoint) or have a gap (``store/delta_filler.py``)."""
        delta_version = int(manifest.delta_commit.get("version") or 0)
        start = self.last_delta + 1 if self.last_delta is not None else 0
        if start < delta_version:
            checkpoint = self.dataset.checkpoint()
            fill_log(self.dataset.path, start, delta_version, manifest,
                     checkpoint.files if checkpoint else None)
        self.last_delta = delta_version

    def held_files(self) -> set[tuple[str, str]]:
        """(path, hash) of every file a verified version here lists."""
        held = set()
        checkpoint = self.dataset.checkpoint() if self.dataset.exists() else None
        if checkpoint is not None:
            held |= {(f.path, f.hash) for f in checkpoint.files}
        if self.dataset.exists():
            for version in self.dataset.versions():
                held |= {(f.path, f.hash) for f in version.manifest.files}
        return held

    def is_held(self, entry: FileEntry, held: set[tuple[str, str]]) -> bool:
        """Whether the file is here already with its bytes: listed by a verified version,
        or left in place by an interrupted run (then hashed again to be sure)."""
        path = self.dataset.path / entry.path
        if not path.is_file() or path.stat().st_size != entry.size:
            return False
        if (entry.path, entry.hash) in held:
            return True
        return file_hash(path, self.dataset.algorithm)[0] == entry.hash

    def fetch_file(self, number: int, entry: FileEntry, chunk_list: bytes) -> Path:
        """A data file into the staging area, checked; what verified there stays for a
        re-run (named by its hash), a partial download goes on from where it stopped."""
        staged = self.incoming / entry.hash
        if staged.is_file():
            return staged
        part = self.incoming / f"{entry.hash}.part"
        hasher = chunker(self.dataset.algorithm, entry.chunk_size)
        self.peer.download(entry.path, part, entry.size, hasher)
        size = part.stat().st_size
        if size < entry.size:
            raise self.bad(f"sent {entry.path} (version {number}) truncated: {size} of "
                           f"{entry.size} bytes")
        # hashed as it was written; a download that found the file whole already was not
        digest = (hasher.digest() if hasher.size == size
                  else hash_file(part, self.dataset.algorithm, entry.chunk_size))
        if digest.hash != entry.hash or digest.chunks_bytes() != chunk_list:
            self.keep_good_chunks(part, digest.chunks, chunk_list, entry.chunk_size)
            raise self.bad(f"sent {entry.path} (version {number}) with bytes that do not match "
                           "its signed hash (a changed byte)")
        os.replace(part, staged)
        self.result.files_fetched += 1
        return staged

    def fetch_columns(self, number: int, entry: FileEntry, chunk_list: bytes,
                      columns: tuple[str, ...]) -> Path:
        """Of a data file, only the chunks of its footer and of ``columns``' column
        chunks, each checked against the signed chunk list, into a sparse file."""
        staged = self.incoming / f"{entry.hash}.columns"
        try:
            held = fetch_columns(staged, entry.size, entry.chunk_size,
                                 chunk_list.decode("ascii").split(), self.dataset.algorithm,
                                 columns, lambda a, b: self.peer.read_range(entry.path, a, b))
        except ChunkMismatch as exc:  # the chunks verified before it stay for a re-run
            raise self.bad(f"sent {entry.path} (version {number}) with a {exc} that does not "
                           "match its signed chunk list (a changed byte)") from None
        except (OSError, IndexError, pa.ArrowException) as exc:
            staged.unlink(missing_ok=True)
            staged.with_name(staged.name + ".held").unlink(missing_ok=True)
            raise self.bad(f"sent {entry.path} (version {number}) whose Parquet footer cannot "
                           f"be read ({exc})") from None
        self.held_chunks[entry.hash] = held
        self.result.files_fetched += 1
        return staged

    @staticmethod
    def keep_good_chunks(part: Path, chunks: tuple[str, ...], chunk_list: bytes,
                         chunk_size: int) -> None:
        """Cut a download that failed its hash after its last chunk that matches the signed
        chunk list: the next run fetches from there on (per-chunk resume)."""
        listed = chunk_list.decode("ascii", errors="replace").split()
        good = 0
        while good < min(len(chunks), len(listed)) and chunks[good] == listed[good]:
            good += 1
        good = min(good, len(listed) - 1)  # the last chunk verifies only with the whole hash
        if good <= 0:
            part.unlink()
            return
        with part.open("r+b") as handle:
            handle.truncate(good * chunk_size)

    def fetch_vectors(self, number: int, entries: Iterable[FileEntry]
                      ) -> list[tuple[Path, Path]]:
        """The deletion vector files the version names, each vector checked (size, CRC,
        signed hash, row count)."""
        by_file: dict[str, list[tuple[str, DeletionVector]]] = {}
        for entry in entries:
            if entry.deletion_vector:
                vector = DeletionVector.from_json(entry.deletion_vector)
                by_file.setdefault(vector.file, []).append((entry.path, vector))
        moves = []
        staging = self.incoming / "dv"
        for name, vectors in sorted(by_file.items()):
            if self.vectors_hold(self.dataset.path, vectors):
                continue
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            size = max(v.offset + v.size + 8 for _, v in vectors)
            self.peer.download(name, target, size)
            if not self.vectors_hold(staging, vectors):
                target.unlink(missing_ok=True)
                raise self.bad(f"sent deletion vector file {name} (version {number}) whose "
                               "vectors do not match their signed hashes")
            self.result.files_fetched += 1
            moves.append((target, self.dataset.path / name))
        return moves

    def vectors_hold(self, directory: Path, vectors: list[tuple[str, DeletionVector]]) -> bool:
        algorithm = self.dataset.algorithm
        for _, vector in vectors:
            try:
                data = deletion_vectors.read_bytes(directory, vector)
                if hash_bytes(algorithm, data) != vector.hash or len(
                        deletion_vectors.deserialize(data)) != vector.cardinality:
                    return False
            except StoreError:
                return False
        return True

    def fetch_delta_commit(self, manifest: Manifest) -> tuple[Path, Path]:
        """The Delta commit the version names, checked against its signed hash."""
        delta_version = int(manifest.delta_commit.get("version") or 0)
        name = f"_delta_log/{delta_version:020d}.json"
        staged = self.incoming / f"delta-{delta_version}.json"
        self.peer.download(name, staged, DELTA_COMMIT_LIMIT)
        if hash_bytes(self.dataset.algorithm, staged.read_bytes()) != manifest.delta_commit.get(
                "hash"):
            staged.unlink()
            raise self.bad(f"sent the Delta commit {name} of version {manifest.version} "
                           "changed: it does not match its signed hash")
        return staged, self.dataset.path / name


def held_columns(manifest: Manifest, wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The columns a ``--columns`` clone holds: those named and the primary key's (so a
    row stays identifiable, and ``diff`` works), in the schema's order."""
    names = [str(c["name"]) for c in manifest.schema.get("columns", [])]
    unknown = [c for c in wanted if c not in names]
    if unknown:
        raise StoreError(f"{manifest.dataset} has no column {', '.join(unknown)} (its columns: "
                         f"{', '.join(names)}); nothing was cloned")
    keep = {*wanted, *manifest.schema.get("primary_key", [])}
    return tuple(n for n in names if n in keep)


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True
