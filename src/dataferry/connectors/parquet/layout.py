"""The parquet sink's folder: snapshots, the ``_ferry_loads.json`` manifest, the table links.

::

    <path>/
      _ferry_loads.json                  {"<table>": {dataset, version, mode, rows, loaded_at,
                                          snapshot, previous, columns, table_rows}}
      <table> -> .versions/<table>/v7-<token>       a symbolic link to the current snapshot
      .versions/<table>/v7-<token>/part-v7-00000.parquet ...
      .versions/<table>/v6-<token>/...              the previous snapshot, kept for readers
      .versions/.lock, .versions/.tmp-<token>/      the writers' lock and scratch space

A version is written as a complete new snapshot folder (fsynced), then committed by
atomically replacing the manifest (write a temporary file, fsync, ``os.replace``), then
published by atomically replacing the table's link (``os.replace`` of a new symlink).
Readers of ``<path>/<table>/`` therefore list either the old or the new snapshot, never a
mix or a half. The manifest is the truth: a crash after the commit but before the link
switch is healed (the link made to match the manifest) by the next call of the sink, and
anything a crashed writer left that the manifest does not name is removed by the next
delivery. The snapshot before the current one is kept until the next delivery, so a
reader that listed it can still open its files.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dataferry.errors import SinkError, TransientError

MANIFEST = "_ferry_loads.json"
VERSIONS = ".versions"
LOCK_SECONDS = 30.0


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's contents to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Folder:
    """The sink's folder (created on first write)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.versions = root / VERSIONS

    # --- the manifest ----------------------------------------------------------------

    def manifest(self) -> dict[str, dict[str, Any]]:
        """The committed manifest ({} when nothing was delivered yet)."""
        try:
            text = (self.root / MANIFEST).read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(text)
        except ValueError as error:
            raise SinkError(f"{self.root / MANIFEST} is not valid JSON ({error}); restore it "
                            "or remove the folder to deliver everything again") from None
        return data if isinstance(data, dict) else {}

    def commit(self, manifest: dict[str, dict[str, Any]]) -> None:
        """Atomically replace the manifest (the commit point of a delivery)."""
        temporary = self.versions / f".tmp-manifest-{uuid.uuid4().hex}"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.root / MANIFEST)
        fsync_path(self.root)

    # --- locking and scratch space ---------------------------------------------------------

    @contextmanager
    def lock(self, wait: float = LOCK_SECONDS) -> Iterator[None]:
        """Hold the folder's writer lock; ``TransientError`` if another writer keeps it."""
        self.versions.mkdir(parents=True, exist_ok=True)
        with open(self.versions / ".lock", "a+b") as handle:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise TransientError(f"{self.root} is being written by another "
                                             "delivery") from None
                    time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    @contextmanager
    def scratch(self) -> Iterator[Path]:
        """A temporary folder inside the sink's folder (same file system), removed after."""
        path = self.versions / f".tmp-{uuid.uuid4().hex}"
        path.mkdir(parents=True)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    # --- snapshots and links -----------------------------------------------------------

    def check_table(self, table: str) -> None:
        """A table name is one folder name; its place must be free or a link we made."""
        if (not table or "/" in table or "\\" in table or table.startswith(".")
                or table == MANIFEST):
            raise SinkError(f"{table!r} cannot be a table of the parquet sink at {self.root}: "
                            "use a plain folder name")
        link = self.root / table
        if link.exists() and not link.is_symlink():
            raise SinkError(f"{link} exists and was not written by dataferry; move it away or "
                            "deliver to another table")

    def new_snapshot(self, table: str, version: int) -> Path:
        path = self.versions / table / f"v{version}-{uuid.uuid4().hex[:12]}"
        path.mkdir(parents=True)
        return path

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def files(self, snapshot: str) -> list[Path]:
        """The Parquet files of a snapshot (relative path as the manifest has it)."""
        return sorted((self.root / snapshot).glob("*.parquet"))

    def publish(self, table: str, snapshot: str) -> None:
        """Atomically point ``<root>/<table>`` at ``snapshot``."""
        link = self.root / table
        target = os.path.relpath(self.root / snapshot, self.root)
        if link.is_symlink() and os.readlink(link) == target:
            return
        temporary = self.root / f".{table}.tmp-{uuid.uuid4().hex}"
        os.symlink(target, temporary)
        os.replace(temporary, link)
        fsync_path(self.root)

    def heal(self, manifest: dict[str, dict[str, Any]]) -> None:
        """Make every table's link match the manifest (after a crash between the two)."""
        for table, entry in manifest.items():
            snapshot = entry.get("snapshot")
            link = self.root / table
            if (isinstance(snapshot, str) and (self.root / snapshot).is_dir()
                    and (link.is_symlink() or not link.exists())):
                self.publish(table, snapshot)

    def collect(self, manifest: dict[str, dict[str, Any]]) -> None:
        """Remove what the manifest does not name: old snapshots, a crashed writer's files."""
        keep = {str(entry.get(key)) for entry in manifest.values()
                for key in ("snapshot", "previous") if entry.get(key)}
        if not self.versions.is_dir():
            return
        for path in self.versions.iterdir():
            if path.name.startswith(".tmp-"):
                _remove(path)
            elif path.is_dir() and not path.name.startswith("."):
                for snapshot in path.iterdir():
                    if self.relative(snapshot) not in keep:
                        _remove(snapshot)
        for stray in self.root.glob(".*.tmp-*"):
            _remove(stray)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
