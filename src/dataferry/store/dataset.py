"""One dataset in the store: its files, signed versions, and reading any version back."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from dataferry.errors import StoreError
from dataferry.store.batching import MAX_BATCH_ROWS, batch_rows
from dataferry.store.hashing import hash_bytes
from dataferry.store.manifest import (
    Checkpoint,
    FileEntry,
    Genesis,
    Manifest,
    Signature,
    read_signed_checkpoint,
)
from dataferry.store.scan import FileScan, file_scans, read_rows
from dataferry.store.sparse import lacks_columns, lacks_version, read_sparse, sparse_from

if TYPE_CHECKING:
    import pyarrow.dataset as pads

    from dataferry.store.mirror import RemoteDataset

SIG = "_sig"
COMPACTED = "compact"
"""The manifest ``mode`` of a version ``ferry compact`` made: the rows of the one before."""


@dataclass(frozen=True)
class Version:
    """A published version: its manifest, the bytes it was signed over, and its signature."""

    number: int
    manifest: Manifest
    raw: bytes
    signature: Signature
    hash: str
    """Hash of the manifest bytes (what the next version's ``prev`` names)."""


class DatasetStore:
    """The directory ``<store>/<team>/<dataset>``: a Delta table plus its ``_sig`` history."""

    def __init__(self, root: Path, ref: str, remote: RemoteDataset | None = None) -> None:
        self.ref = ref
        self.remote = remote
        """Set when the store is in a bucket: ``path`` is then the dataset's mirror."""
        team, _, name = ref.partition(".")
        self.team = team
        self.name = name
        self.path = root / team / name
        self._genesis: Genesis | None = None

    # --- layout ----------------------------------------------------------------------

    @property
    def sig(self) -> Path:
        return self.path / SIG

    def manifest_path(self, version: int) -> Path:
        return self.sig / "m" / f"{version:012d}.json"

    def signature_path(self, version: int) -> Path:
        return self.sig / "m" / f"{version:012d}.sig"

    def chunks_path(self, file_hash: str) -> Path:
        return self.sig / "c" / f"{file_hash}.chunks"

    @property
    def genesis_path(self) -> Path:
        return self.sig / "genesis.json"

    @property
    def checkpoint_path(self) -> Path:
        return self.sig / "checkpoint.json"

    def exists(self) -> bool:
        return self.genesis_path.is_file()

    # --- history ---------------------------------------------------------------------

    def genesis(self) -> Genesis:
        if self._genesis is not None:
            return self._genesis
        try:
            self._genesis = Genesis.from_bytes(self.genesis_path.read_bytes())
            return self._genesis
        except FileNotFoundError:
            raise StoreError(f"dataset {self.ref} has no versions in the store yet; run "
                             f"`ferry publish {self.ref} FILE` (or `ferry run`)") from None

    @property
    def algorithm(self) -> str:
        return self.genesis().algorithm

    def version_numbers(self) -> list[int]:
        """Published versions (those with a signature), oldest first."""
        directory = self.sig / "m"
        if not directory.is_dir():
            return []
        numbers = []
        for entry in os.scandir(directory):
            name = entry.name
            if name.endswith(".sig") and name[:-4].isdigit():
                numbers.append(int(name[:-4]))
        return sorted(numbers)

    def head_number(self) -> int | None:
        numbers = self.version_numbers()
        return numbers[-1] if numbers else None

    def version(self, number: int) -> Version:
        """A published version as stored (not verified: see ``verify``)."""
        try:
            raw = self.manifest_path(number).read_bytes()
            signature = Signature.from_bytes(self.signature_path(number).read_bytes())
        except FileNotFoundError:
            known = self.version_numbers()
            span = f"{known[0]}..{known[-1]}" if known else "none yet"
            raise StoreError(f"{self.ref} has no version {number} (versions: {span})") from None
        except (ValueError, KeyError) as exc:
            raise StoreError(f"{self.ref} version {number}: unreadable signature ({exc})") from None
        try:
            manifest = Manifest.from_bytes(raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{self.ref} version {number}: unreadable manifest ({exc})") from None
        return Version(number, manifest, raw, signature, hash_bytes(self.algorithm, raw))

    def head(self) -> Version | None:
        number = self.head_number()
        return self.version(number) if number is not None else None

    def checkpoint(self) -> Checkpoint | None:
        if not self.checkpoint_path.is_file():
            return None
        return read_signed_checkpoint(self.checkpoint_path.read_bytes())[0]

    def versions(self) -> Iterator[Version]:
        for number in self.version_numbers():
            yield self.version(number)

    def active_files(self, number: int, *, fetch: bool = True) -> list[FileEntry]:
        """Every data file of version ``number`` (folding adds/removes from the start).

        In a bucket the files are made present in the mirror and pinned for the command
        in flight (``mirror.RemoteDataset.ensure``), unless not ``fetch``: for callers
        that read only the entries (names, sizes, hashes), not the files."""
        checkpoint = self.checkpoint()
        files: dict[str, FileEntry] = {}
        start = 1
        if checkpoint is not None:
            files = {f.path: f for f in checkpoint.files}
            start = checkpoint.first_version
        if number < start:
            raise StoreError(f"{self.ref} version {number} was removed by `ferry gc`; the "
                             f"oldest kept version is {start}")
        for n in self.version_numbers():
            if n < start or n > number:
                continue
            manifest = self.version(n).manifest
            for path in manifest.removed:
                files.pop(path, None)
            for entry in manifest.files:
                files[entry.path] = entry
        active = sorted(files.values(), key=lambda f: f.path)
        if fetch and self.remote is not None:
            self.remote.ensure(active)
        return active

    @contextmanager
    def fetched(self, entries: list[FileEntry], *, check: bool = True) -> Iterator[None]:
        """``entries``' files present (in a bucket: fetched and pinned) for the block only,
        for reading many files one after another (``ferry verify``) in a bounded mirror."""
        if self.remote is None:
            yield
            return
        pinned = self.remote.ensure(entries, check=check)
        try:
            yield
        finally:
            self.remote.release(pinned)

    def same_rows(self, old: int, new: int) -> bool:
        """Whether version ``new`` holds the rows of ``old`` because every version after
        ``old`` up to ``new`` is a compaction (False when ``new`` is not after ``old``)."""
        if new <= old:
            return False
        numbers = [n for n in self.version_numbers() if old < n <= new]
        return bool(numbers) and all(
            self.version(n).manifest.mode == COMPACTED for n in numbers)

    def rows_version(self, version: Version) -> Version:
        """The version whose rows ``version`` holds: itself, or the (kept) version before
        a run of compactions that ends with it. Its time is when the data last changed."""
        numbers = [n for n in self.version_numbers() if n < version.number]
        while version.manifest.mode == COMPACTED and numbers:
            version = self.version(numbers.pop())
        return version

    # --- reading data ----------------------------------------------------------------

    def resolve(self, number: int | None) -> Version:
        if number is None:
            head = self.head()
            if head is None:
                self.genesis()  # raises the "no versions yet" error
                raise StoreError(f"dataset {self.ref} has no published version yet")
            return head
        first = sparse_from(self.sig)
        if first is not None and number < first:
            raise lacks_version(self.ref, number, first)
        return self.version(number)

    def arrow_schema(self, version: Version) -> pa.Schema:
        return schema_from_manifest(version.manifest.schema)

    def _scanner(self, version: Version, columns: list[str] | None,
                 batch_size: int) -> pads.Scanner:
        """A streaming scan of a version's files, for versions without deletion vectors
        (partitioned ones included)."""
        import pyarrow.dataset as pads  # here: a run that only publishes does not need it

        schema = self.arrow_schema(version)
        files = self.active_files(version.number)
        paths = [str(self.path / f.path) for f in files]
        partitioned = {name for f in files for name in f.partition_values}
        partitioning = None
        if partitioned:
            # deltalake keeps partition values in the path (hive style), not in the files.
            fields = [f for f in schema if f.name in partitioned]
            partitioning = pads.partitioning(pa.schema(fields), flavor="hive")
        dataset = pads.dataset(paths, schema=schema, format="parquet",
                               partitioning=partitioning, partition_base_dir=str(self.path))
        if batch_size >= MAX_BATCH_ROWS:
            return dataset.scanner(columns=columns, batch_size=batch_size)
        # Wide rows: pyarrow's read-ahead (16 batches, 4 files) would hold them by the GiB.
        return dataset.scanner(columns=columns, batch_size=batch_size, batch_readahead=2,
                               fragment_readahead=1)

    def reader(self, version: Version, columns: list[str] | None = None,
               batch_size: int = MAX_BATCH_ROWS) -> pa.RecordBatchReader:
        """A version's live rows as a stream of record batches (bounded memory): at most
        ``batch_size`` rows and about ``batching.BATCH_BYTES`` a batch."""
        columns = self.held_columns(version, columns)
        files = self.active_files(version.number)
        batch_size = min(batch_size, batch_rows(self.path, files, columns))
        wide = batch_size < MAX_BATCH_ROWS and not any(f.partition_values for f in files)
        # Wide rows are read file by file: pyarrow's dataset scanner held 570 MiB reading
        # 64 MiB row groups of 1 MiB values 16 rows at a time, ``read_rows`` 390 MiB.
        if wide or any(f.deletion_vector for f in files):
            return read_rows(file_scans(self.path, files), self.arrow_schema(version),
                             columns, batch_size)
        return self._scanner(version, columns, batch_size).to_reader()

    def held_columns(self, version: Version, columns: list[str] | None) -> list[str] | None:
        """``columns`` (None: every column), or, on a clone holding only some columns, the
        ones it holds; raises naming a column asked for that it does not hold."""
        sparse = read_sparse(self.sig)
        if sparse is None or sparse.columns is None:
            return columns
        names = self.arrow_schema(version).names
        held = [n for n in names if n in sparse.columns or any(
            n in f.partition_values for f in self.active_files(version.number, fetch=False))]
        if columns is None:
            return held
        missing = [c for c in columns if c not in held]
        if missing:
            raise lacks_columns(self.ref, missing, tuple(held))
        return columns

    def scans(self, version: Version) -> list[FileScan]:
        """What to read for a version's rows: its files with their deletion vectors."""
        return file_scans(self.path, self.active_files(version.number))

    def partition_columns(self, version: Version) -> list[str]:
        """Columns whose values live in the file paths (hive style) instead of the files."""
        return sorted({name for f in self.active_files(version.number, fetch=False)
                       for name in f.partition_values})

    def file_paths(self, version: Version) -> list[str]:
        return self.file_paths_for(self.active_files(version.number))

    def file_paths_for(self, files: list[FileEntry]) -> list[str]:
        return [str(self.path / f.path) for f in files]

    @contextmanager
    def lock(self) -> Iterator[None]:
        """An exclusive lock for writers of this dataset (one process at a time)."""
        self.sig.mkdir(parents=True, exist_ok=True)
        with (self.sig / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                if self.remote is not None:  # what other machines published, first
                    self.remote.pull()
                    self._genesis = None
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def where(self, relative: str) -> str:
        """A file of the dataset as messages name it: its object in a bucket, else its
        path relative to the dataset."""
        return self.remote.url(relative) if self.remote is not None else relative

    def commit_remote(self, manifest: Manifest, raw: bytes, signature: bytes,
                      chunk_lists: list[tuple[str, bytes]]) -> None:
        """In a bucket: send the signed version up (``mirror.RemoteDataset.commit``, whose
        conditional put is the commit point), before it is written to the mirror."""
        if self.remote is not None:
            self.remote.commit(manifest, raw, signature, chunk_lists, self.algorithm)

    @cached_property
    def delta_log(self) -> Path:
        return self.path / "_delta_log"

    def delta_entry(self, delta_version: int) -> tuple[bytes, list[dict[str, Any]]]:
        """The bytes of a Delta commit file and its actions."""
        raw = (self.delta_log / f"{delta_version:020d}.json").read_bytes()
        actions = [json.loads(line) for line in raw.splitlines() if line.strip()]
        return raw, actions


def schema_from_manifest(schema: dict[str, Any]) -> pa.Schema:
    """The Arrow schema of the store's files for the declared columns a manifest records."""
    from dataferry.store.storage import store_schema

    return store_schema((c["name"], c["type"], c.get("nullable", True)) for c in schema["columns"])


def declared_types(schema: dict[str, Any]) -> dict[str, str]:
    """Column name -> declared type text, from a manifest's schema block."""
    return {c["name"]: c["type"] for c in schema["columns"]}


def commit_hash(algorithm: str, raw: bytes) -> str:
    return hash_bytes(algorithm, raw)
