"""``ferry verify``: every check of STORE.md's verification list, over one dataset.

1. the genesis hashes to the dataset id every manifest names (and to a pinned id, if given);
2. each manifest is signed by a key the genesis (or an earlier signed key rotation) allows;
3. each manifest's ``prev`` is the hash of the one before, versions have no gaps;
4. each file's bytes hash to its recorded hash (and size), its chunk list hashes to
   ``chunks_hash`` (``deep``: the chunks are recomputed from the bytes too), the Merkle
   root covers the version's files, and the Delta commit a version names is byte-for-byte
   the one signed for, adding and removing the same files.

Problems are collected, not raised: each names the dataset, version and file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dataferry.errors import StoreError, VerificationError
from dataferry.store import deletion_vectors
from dataferry.store.dataset import DatasetStore
from dataferry.store.deletion_vectors import DeletionVector
from dataferry.store.delta_filler import BASE, GAP, filler_problem
from dataferry.store.hashing import file_hash, hash_bytes, hash_file
from dataferry.store.keys import fingerprint, verify_signature
from dataferry.store.manifest import (
    FileEntry,
    Manifest,
    Signature,
    files_root,
    read_signed_checkpoint,
)
from dataferry.store.sparse import read_held, sparse_from


@dataclass(frozen=True)
class Problem:
    dataset: str
    version: int | None
    file: str | None
    problem: str

    def as_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "version": self.version, "file": self.file,
                "problem": self.problem}

    def as_text(self) -> str:
        where = self.dataset + (f"@{self.version}" if self.version is not None else "")
        return f"{where}{f' {self.file}' if self.file else ''}: {self.problem}"


@dataclass
class VerifyReport:
    checked_files: int = 0
    checked_bytes: int = 0
    checked_versions: int = 0
    not_held_files: int = 0
    """Files of versions before a sparse clone's first (``ferry clone --version N``)."""
    not_held_chunks: int = 0
    """Chunks of files a column-sparse clone does not hold (``ferry clone --columns``)."""
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_dataset(
    dataset: DatasetStore,
    report: VerifyReport,
    *,
    pinned_id: str | None = None,
    deep: bool = False,
    on_bytes: Callable[[int], None] | None = None,
    files_of: int | None = None,
) -> None:
    """Verify one dataset into ``report`` (see the module docstring).

    ``files_of``: check every manifest, signature and link, but hash only the files (and
    deletion vectors) of that version: what reading one version needs.
    """
    ref = dataset.ref

    def problem(version: int | None, file: str | None, text: str) -> None:
        report.problems.append(Problem(ref, version, file and dataset.where(file), text))

    try:
        genesis = dataset.genesis()
    except (StoreError, ValueError, KeyError) as exc:
        problem(None, "_sig/genesis.json", f"genesis unreadable: {exc}")
        return
    algorithm = genesis.algorithm
    dataset_id = genesis.dataset_id
    if pinned_id is not None and dataset_id != pinned_id:
        problem(None, "_sig/genesis.json",
                f"genesis hash {dataset_id} is not the pinned dataset id {pinned_id}")
    allowed = set(genesis.keys)
    checkpoint = dataset.checkpoint()
    prev_hash: str | None = None
    expected = 1
    active: dict[str, FileEntry] = {}
    checked: set[tuple[str, str]] = set()
    unheld: set[tuple[str, str]] = set()
    last_delta: int | None = None
    try:
        sparse = sparse_from(dataset.sig)
    except StoreError as exc:
        problem(None, "_sig/sparse.json", str(exc))
        sparse = None

    def verify_entry(number: int, entry: FileEntry) -> None:
        """A file's bytes (once: a file relisted with a new vector is the same file) and
        its deletion vector. In a bucket, fetched as the bucket holds it (not checked on
        the way: that is what this does) and released after, so a bounded mirror can
        verify a store larger than itself."""
        if (entry.path, entry.hash) in checked and not entry.deletion_vector:
            return
        with dataset.fetched([entry], check=False):
            if (entry.path, entry.hash) not in checked:
                _verify_file(dataset, algorithm, number, entry, deep, report, problem,
                             on_bytes)
                checked.add((entry.path, entry.hash))
            if entry.deletion_vector:
                _verify_vector(dataset, algorithm, number, entry, problem)

    if checkpoint is not None:
        _, body, signature = read_signed_checkpoint(dataset.checkpoint_path.read_bytes())
        if signature.key not in allowed or not verify_signature(
            signature.key, body, signature.signature
        ):
            problem(None, "_sig/checkpoint.json", "checkpoint signature is invalid")
        if checkpoint.dataset_id != dataset_id:
            problem(None, "_sig/checkpoint.json", "checkpoint names another dataset id")
        allowed = set(checkpoint.keys)
        prev_hash = checkpoint.prev
        expected = checkpoint.first_version
        active = {f.path: f for f in checkpoint.files}
        first = dataset.version(checkpoint.first_version).manifest if (
            checkpoint.first_version in dataset.version_numbers()) else None
        still_used = set(active) - set(first.removed if first else ())
        for entry in checkpoint.files:  # files older versions added that are still data
            if sparse is not None:
                unheld.add((entry.path, entry.hash))
            elif entry.path in still_used and files_of is None:
                verify_entry(checkpoint.first_version, entry)
    for number in dataset.version_numbers():
        if checkpoint is not None and number < checkpoint.first_version:
            continue
        report.checked_versions += 1
        manifest_file = dataset.manifest_path(number).relative_to(dataset.path).as_posix()
        if number != expected:
            problem(number, manifest_file, f"version {expected} is missing (chain gap)")
        expected = number + 1
        try:
            raw = dataset.manifest_path(number).read_bytes()
            manifest = Manifest.from_bytes(raw)
        except (OSError, ValueError, KeyError, TypeError, StoreError) as exc:
            problem(number, manifest_file, f"manifest unreadable: {exc}")
            prev_hash = None
            continue
        signed = _signature(dataset.signature_path(number))
        if signed is None:
            problem(number, manifest_file, "signature file is unreadable")
        elif signed.key not in allowed:
            problem(number, manifest_file,
                    f"signed by key {fingerprint(bytes.fromhex(signed.key))}, which the "
                    "genesis does not allow")
        elif not verify_signature(signed.key, raw, signed.signature):
            problem(number, manifest_file, "bad signature: the manifest was changed after "
                    "it was signed, or the signature is forged")
        if manifest.version != number:
            problem(number, manifest_file, f"manifest says version {manifest.version}")
        if manifest.dataset != ref or manifest.dataset_id != dataset_id:
            problem(number, manifest_file, "manifest belongs to another dataset")
        if manifest.prev != prev_hash:
            problem(number, manifest_file, "broken chain: prev does not match the hash of "
                    "the previous manifest")
        prev_hash = hash_bytes(algorithm, raw)
        for path in manifest.removed:
            active.pop(path, None)
        for entry in manifest.files:
            active[entry.path] = entry
            if sparse is not None and number < sparse:
                unheld.add((entry.path, entry.hash))  # a sparse clone holds none of these
            elif files_of is None and number != sparse:
                verify_entry(number, entry)
        root = files_root(algorithm, active.values())
        if root != manifest.root:
            problem(number, manifest_file, "Merkle root does not match the version's files")
        delta_version = int(manifest.delta_commit.get("version") or 0)
        _verify_delta(dataset, algorithm, number, manifest, problem,
                      unchanged_before=_unchanged_form(manifest, last_delta, delta_version),
                      kept=set(active) if last_delta is None and checkpoint is not None
                      and number == checkpoint.first_version else None)
        _verify_fillers(dataset, number, last_delta, delta_version,
                        checkpoint.files if checkpoint else None, problem)
        last_delta = delta_version
        if manifest.keys is not None:
            allowed = set(manifest.keys)
        if number == files_of or (files_of is None and number == sparse):
            for entry in active.values():
                verify_entry(number, entry)
    report.not_held_files += len(unheld - checked)


def _signature(path: Any) -> Signature | None:
    try:
        return Signature.from_bytes(path.read_bytes())
    except (OSError, ValueError, KeyError):
        return None


def _verify_file(
    dataset: DatasetStore, algorithm: str, number: int, entry: FileEntry, deep: bool,
    report: VerifyReport, problem: Callable[[int | None, str | None, str], None],
    on_bytes: Callable[[int], None] | None,
) -> None:
    path = dataset.path / entry.path
    report.checked_files += 1
    if not path.is_file():
        problem(number, entry.path, "file is missing")
        return
    size = path.stat().st_size
    if size != entry.size:
        problem(number, entry.path, f"file is {size} bytes, the manifest says {entry.size} "
                f"({'truncated' if size < entry.size else 'grown'})")
        return
    try:
        held = read_held(dataset.sig, entry.hash)
    except StoreError as exc:
        problem(number, entry.path, str(exc))
        return
    if held is not None:
        _verify_held(dataset, algorithm, number, entry, held, report, problem)
        return
    if deep:
        digest = hash_file(path, algorithm)
        actual, chunks = digest.hash, list(digest.chunks)
    else:
        actual, _ = file_hash(path, algorithm)
        chunks = None
    report.checked_bytes += size
    if on_bytes is not None:
        on_bytes(size)
    if actual != entry.hash:
        problem(number, entry.path, "content does not match its hash (the file was changed)")
    chunk_file = dataset.chunks_path(entry.hash)
    try:
        listed = chunk_file.read_bytes()
    except OSError:
        problem(number, entry.path, "chunk list is missing")
        return
    if hash_bytes(algorithm, listed) != entry.chunks_hash:
        problem(number, entry.path, "chunk list does not match chunks_hash")
    elif chunks is not None and listed.decode().split() != chunks:
        problem(number, entry.path, "chunk hashes do not match the file's bytes")


def _verify_held(
    dataset: DatasetStore, algorithm: str, number: int, entry: FileEntry, held: list[int],
    report: VerifyReport, problem: Callable[[int | None, str | None, str], None],
) -> None:
    """A file a column-sparse clone holds part of: each chunk it holds against the signed
    chunk list (the whole file's hash needs every chunk)."""
    try:
        listed = dataset.chunks_path(entry.hash).read_bytes()
    except OSError:
        problem(number, entry.path, "chunk list is missing")
        return
    if hash_bytes(algorithm, listed) != entry.chunks_hash:
        problem(number, entry.path, "chunk list does not match chunks_hash")
        return
    chunks = listed.decode("ascii", errors="replace").split()
    bad = []
    with (dataset.path / entry.path).open("rb") as handle:
        for index in held:
            handle.seek(index * entry.chunk_size)
            data = handle.read(entry.chunk_size)
            report.checked_bytes += len(data)
            if index >= len(chunks) or hash_bytes(algorithm, data) != chunks[index]:
                bad.append(index)
    if bad:
        problem(number, entry.path, f"held chunk(s) {', '.join(map(str, bad[:5]))} do not "
                "match the signed chunk list (the file was changed)")
    report.not_held_chunks += len(chunks) - len(set(held))


def _verify_vector(
    dataset: DatasetStore, algorithm: str, number: int, entry: FileEntry,
    problem: Callable[[int | None, str | None, str], None],
) -> None:
    """A deletion vector's bytes: present, intact (size, CRC) and as signed (hash)."""
    assert entry.deletion_vector is not None
    vector = DeletionVector.from_json(entry.deletion_vector)
    try:
        data = deletion_vectors.read_bytes(dataset.path, vector)
    except StoreError as exc:
        problem(number, vector.file, f"deletion vector of {entry.path}: {exc}")
        return
    if hash_bytes(algorithm, data) != vector.hash:
        problem(number, vector.file, f"deletion vector of {entry.path} does not match its "
                "hash (the file was changed)")
    elif len(deletion_vectors.deserialize(data)) != vector.cardinality:
        problem(number, vector.file, f"deletion vector of {entry.path} deletes another "
                "number of rows than the manifest says")


def _unchanged_form(manifest: Manifest, last_delta: int | None, delta_version: int) -> bool:
    """A version that changes no file and names its predecessor's Delta commit: how
    dataferry wrote a keyed transform's version with new inputs and the same rows until
    December 2026 (now such a version has a commit of its own). Stores keep such
    versions, so their commit is checked by hash only: its adds are its predecessor's."""
    return (last_delta is not None and delta_version == last_delta
            and not manifest.files and not manifest.removed)


def _verify_delta(
    dataset: DatasetStore, algorithm: str, number: int, manifest: Manifest,
    problem: Callable[[int | None, str | None, str], None], *, unchanged_before: bool = False,
    kept: set[str] | None = None,
) -> None:
    """``unchanged_before``: the version is in the older form of a version that changes no
    file (``_unchanged_form``). ``kept``: the first version after a gc checkpoint, with
    the files it keeps: its predecessor's commit is not known, so the older form is taken
    when the commit adds only kept files and removes none of them."""
    delta_version = manifest.delta_commit.get("version")
    log_file = f"_delta_log/{int(delta_version or 0):020d}.json"
    try:
        raw = (dataset.path / log_file).read_bytes()
    except OSError:
        problem(number, log_file, "Delta commit is missing")
        return
    if hash_bytes(algorithm, raw) != manifest.delta_commit.get("hash"):
        problem(number, log_file, "Delta commit was changed after the version was signed")
    try:
        actions = [json.loads(line) for line in raw.splitlines() if line.strip()]
    except ValueError as exc:
        problem(number, log_file, f"Delta commit is not valid JSON lines: {exc}")
        return
    if unchanged_before:
        return
    added = {a["add"]["path"] for a in actions if "add" in a}
    removed = {a["remove"]["path"] for a in actions if "remove" in a}
    if kept is not None and not manifest.files and not manifest.removed and (
            added <= kept and not removed & kept):
        return  # the older form, right after the checkpoint: its predecessor's commit
    if added != {f.path for f in manifest.files}:
        extra = sorted(added - {f.path for f in manifest.files})
        problem(number, log_file, "Delta commit adds other files than the manifest"
                + (f": {', '.join(extra[:3])}" if extra else ""))
    if removed != set(manifest.removed):
        problem(number, log_file, "Delta commit removes other files than the manifest")


def _verify_fillers(
    dataset: DatasetStore, number: int, last: int | None, delta_version: int,
    base: tuple[FileEntry, ...] | None,
    problem: Callable[[int | None, str | None, str], None],
) -> None:
    """The Delta commits below a signed one that no signed version names: between two
    signed ones only a clone's fillers may be; before the first, a commit that says it is
    a filler must be one (others are a gc'd store's own older history)."""
    for version in range(last + 1 if last is not None else 0, delta_version):
        log_file = f"_delta_log/{version:020d}.json"
        try:
            raw = (dataset.path / log_file).read_bytes()
        except OSError:
            continue
        if last is None and not any(f'"operation":"{name}"'.encode() in raw.split(b"\n")[0]
                                    for name in (GAP, BASE)):
            continue
        found = filler_problem(raw, version, base)
        if found is not None:
            problem(number, log_file, found)


def verify_for_reading(dataset: DatasetStore, number: int) -> None:
    """Check version ``number`` before computing on it: its chain of signed manifests and
    the bytes of its files; raise ``VerificationError`` naming what is wrong."""
    report = VerifyReport()
    verify_dataset(dataset, report, files_of=number)
    if not report.ok:
        shown = "; ".join(p.as_text() for p in report.problems[:3])
        more = f" (and {len(report.problems) - 3} more)" if len(report.problems) > 3 else ""
        raise VerificationError(f"{dataset.ref} version {number} does not verify, so it is "
                                f"not read: {shown}{more}; run `ferry verify {dataset.ref}`")
