"""The size bound of an ``s3://`` store's mirror: pins, and least-recently-used eviction.

The mirror keeps the history of each dataset (``_sig``, ``_delta_log``: small, always
there) and the data files a command reads, downloaded on demand. When its data files
pass the bound (``mirror_size:`` in ferry.yaml, ``FERRY_MIRROR_SIZE``), the least
recently used ones are deleted, except

- files **pinned** by a command in flight, in this process or any other on the machine
  (each process lists its pins in ``<home>/s3/<bucket>/pins/<pid>.json``; a file of a
  process that is gone is ignored and removed), and
- files the bucket does not hold as the mirror does (not in the dataset's index: a
  version being written, not yet uploaded).

A command pins what it reads until it ends; ``ferry serve`` pins per request
(``pinning``). Pinning and eviction take one lock, so a file a command has pinned and
found present stays present. The bound is on what is not pinned: a command reading more
than the bound holds it all until it ends, and the next eviction trims the mirror back.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from dataferry.errors import UsageError

DEFAULT_MIRROR_SIZE = 20 * 1024**3
"""20 GiB: room for the working set of most ecosystems on a laptop or a small VM."""

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "ki": 1024,
          "m": 1000**2, "mb": 1000**2, "mib": 1024**2, "mi": 1024**2,
          "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "gi": 1024**3,
          "t": 1000**4, "tb": 1000**4, "tib": 1024**4, "ti": 1024**4}


def parse_size(value: int | str) -> int:
    """Bytes from ``20GB``, ``512MiB``, ``1.5G`` or a plain number of bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{value} is not a size: it is negative")
        return value
    match = _SIZE.fullmatch(str(value))
    if match is None:
        raise ValueError(f"{value!r} is not a size: write bytes or a number and a unit, "
                         "e.g. 20GB, 512MiB")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])


def mirror_size(value: int | str | None) -> int:
    """The bound for a setting (None: the default); a bad one is a usage error."""
    if value is None:
        return DEFAULT_MIRROR_SIZE
    try:
        return parse_size(value)
    except ValueError as exc:
        raise UsageError(f"mirror_size: {exc} (ferry.yaml or FERRY_MIRROR_SIZE)") from None


class _Scope:
    def __init__(self) -> None:
        self.paths: set[str] = set()


_PROCESS = _Scope()
_scope: ContextVar[_Scope] = ContextVar("dataferry_mirror_pins", default=_PROCESS)
_live: set[_Scope] = {_PROCESS}
_caches: dict[Path, MirrorCache] = {}
_guard = threading.Lock()
"""Scopes change in the threads of a server's requests."""


def _pinned_here() -> set[str]:
    with _guard:
        return set().union(*(scope.paths for scope in _live))


@contextmanager
def pinning() -> Iterator[None]:
    """Pins made inside last until the block ends (a request of ``ferry serve``), instead
    of until the process ends."""
    scope = _Scope()
    with _guard:
        _live.add(scope)
    token = _scope.set(scope)
    try:
        yield
    finally:
        _scope.reset(token)
        with _guard:
            _live.discard(scope)
        for cache in list(_caches.values()):
            if any(p.startswith(str(cache.root)) for p in scope.paths):
                cache.write_pins()


class MirrorCache:
    """The data files under ``root`` (a mirror), bounded to ``limit`` bytes; ``state``
    holds the lock and the pin files, ``indexes`` the datasets' indexes
    (``<team>/<dataset>.json``)."""

    def __init__(self, root: Path, state: Path, indexes: Path, limit: int) -> None:
        self.root = root
        self.state = state
        self.indexes = indexes
        self.limit = limit
        if state not in _caches:
            _caches[state] = self
            atexit.register(self._pin_file.unlink, missing_ok=True)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.state.mkdir(parents=True, exist_ok=True)
        with (self.state / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @property
    def _pin_file(self) -> Path:
        return self.state / f"{os.getpid()}.json"

    def write_pins(self) -> None:
        mine = sorted(p for p in _pinned_here() if p.startswith(str(self.root)))
        with self._locked():
            self._write_pins(mine)

    def _write_pins(self, mine: list[str]) -> None:
        """Replace this process's pin file (no fsync: after a crash no process holds
        pins anyway)."""
        if not mine:
            self._pin_file.unlink(missing_ok=True)
            return
        temp = self._pin_file.with_name(f".{self._pin_file.name}.tmp")
        temp.write_text(json.dumps(mine))
        os.replace(temp, self._pin_file)

    def pin(self, paths: Iterable[Path]) -> set[str]:
        """Pin files for the command in flight (the current ``pinning`` block, else the
        process); returns those newly pinned (for ``unpin``). Once this returns, no
        eviction deletes them: a file present now stays present, one missing may be
        downloaded."""
        scope = _scope.get()
        wanted = {str(p) for p in paths}
        with _guard:
            fresh = wanted - scope.paths
        unknown = wanted - _pinned_here()
        with _guard:
            scope.paths |= wanted
        if unknown:
            with self._locked():
                self._write_pins(sorted(p for p in _pinned_here()
                                        if p.startswith(str(self.root))))
        return fresh

    def unpin(self, paths: Iterable[str]) -> None:
        """Release pins ``pin`` made (a file read and done with, as ``ferry verify``)."""
        with _guard:
            _scope.get().paths.difference_update(paths)

    @staticmethod
    def touch(path: Path) -> None:
        """Record a use (the access time; the modification time stays)."""
        try:
            stat = path.stat()
            os.utime(path, ns=(time.time_ns(), stat.st_mtime_ns))
        except OSError:
            pass

    # --- eviction ---------------------------------------------------------------------

    def _others_pins(self) -> set[str]:
        pins: set[str] = set()
        if not self.state.is_dir():
            return pins
        for entry in self.state.glob("*.json"):
            pid = int(entry.stem) if entry.stem.isdigit() else -1
            if pid == os.getpid():
                continue
            if pid <= 0 or not _alive(pid):
                entry.unlink(missing_ok=True)  # a process that ended without tidying
                continue
            try:
                pins.update(json.loads(entry.read_text()))
            except (OSError, ValueError):
                continue
        return pins

    def data_files(self) -> Iterator[tuple[Path, os.stat_result, bool]]:
        """Every data file in the mirror: its path, stat, and whether the bucket holds it
        as the mirror does (in the dataset's index)."""
        if not self.root.is_dir():
            return
        for team in sorted(os.scandir(self.root), key=lambda e: e.name):
            if not team.is_dir() or team.name.startswith(("_", ".")):
                continue
            for dataset in sorted(os.scandir(team.path), key=lambda e: e.name):
                if not dataset.is_dir() or dataset.name.startswith(("_", ".")):
                    continue
                try:
                    index = json.loads((self.indexes / team.name / f"{dataset.name}.json")
                                       .read_text())
                except (OSError, ValueError):
                    index = {}
                base = Path(dataset.path)
                for directory, dirnames, filenames in os.walk(base):
                    if directory == dataset.path:
                        dirnames[:] = [d for d in dirnames if d not in ("_sig", "_delta_log")]
                    for name in filenames:
                        if name.startswith("."):
                            continue  # a download or write in progress
                        path = Path(directory) / name
                        try:
                            stat = path.stat()
                        except OSError:
                            continue
                        yield path, stat, bool(index.get(path.relative_to(base).as_posix()))

    def trim(self) -> int:
        """Evict least recently used data files until the mirror is within its bound;
        returns the bytes evicted."""
        with self._locked():
            files = list(self.data_files())
            total = sum(stat.st_size for _, stat, _ in files)
            if total <= self.limit:
                return 0
            pinned = _pinned_here() | self._others_pins()
            evicted = 0
            for path, stat, held in sorted(files, key=lambda f: f[1].st_atime_ns):
                if total <= self.limit:
                    break
                if not held or str(path) in pinned:
                    continue
                path.unlink(missing_ok=True)
                total -= stat.st_size
                evicted += stat.st_size
            return evicted


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
