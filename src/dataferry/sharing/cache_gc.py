"""``ferry gc`` of the sharing cache (``<store>/_sharing_cache/<need hash>/<ref>/<entry>``).

An entry is a version's derived files (``000000000012``) or a change set's
(``000000000012.cdf``, which reads that version and the one before), each also with
``-signed`` (unsigned integers widened for the delta response format). gc removes the
entries of versions the store no longer has (gc dropped them: they can no longer be
served), and, given the model, every need folder no consumer need hashes to any more (the
consumer or the need left the model, or changed: a changed need derives anew). The rest
stays. A server that derives a file while gc removes its folder derives it again on the
next query.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from dataferry.model.graph import ModelIndex
from dataferry.sharing.files import CACHE, need_hash
from dataferry.store.store import Store


@dataclass
class CacheSweep:
    removed: list[str] = field(default_factory=list)
    """The removed folders, relative to the store root."""
    freed_bytes: int = 0


def sweep_cache(store: Store, index: ModelIndex | None) -> CacheSweep:
    """Remove the cache entries of dropped versions, and (with ``index``) of old needs."""
    result = CacheSweep()
    root = store.root / CACHE
    if not root.is_dir():
        return result
    live = None if index is None else {
        need_hash(store, ref, need)
        for ref, (_, _, consumer) in index.consumers.items() for need in consumer.datasets}
    versions: dict[str, set[int]] = {}
    for need_folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if live is not None and need_folder.name not in live:
            _remove(store, need_folder, result)
            continue
        for ref_folder in sorted(p for p in need_folder.iterdir() if p.is_dir()):
            if ref_folder.name not in versions:
                versions[ref_folder.name] = _numbers(store, ref_folder.name)
            held = versions[ref_folder.name]
            for entry in sorted(p for p in ref_folder.iterdir() if p.is_dir()):
                if not _servable(entry.name, held):
                    _remove(store, entry, result)
            if not any(ref_folder.iterdir()):
                ref_folder.rmdir()
        if not any(need_folder.iterdir()):
            need_folder.rmdir()
    return result


def _numbers(store: Store, ref: str) -> set[int]:
    dataset = store.dataset(ref)
    return set(dataset.version_numbers()) if dataset.exists() else set()


def _servable(name: str, held: set[int]) -> bool:
    # "-signed": the same rows with unsigned integers widened (the delta response format)
    number, _, suffix = name.removesuffix("-signed").partition(".")
    if not number.isdigit() or suffix not in ("", "cdf"):
        return False
    version = int(number)
    return version in held and (suffix == "" or version - 1 in held)


def _remove(store: Store, folder: Path, result: CacheSweep) -> None:
    result.freed_bytes += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    result.removed.append(str(folder.relative_to(store.root)))
    shutil.rmtree(folder, ignore_errors=True)
