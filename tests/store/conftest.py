"""Fixtures for store tests: a small model with datasets of several shapes, and its store."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from dataferry.model.graph import ModelIndex
from dataferry.model.load import load_model
from dataferry.model.spec import DatasetCommon
from dataferry.store.dataset import DatasetStore
from dataferry.store.keys import KeyStore
from dataferry.store.publish import Published, publish
from dataferry.store.store import Store
from tests.conftest import write_files

TEAM = """\
team: shop
zone: eu
owners: [alice@acme.example]
sources:
  db:
    kind: sqlite
    path: shop.db
    datasets:
      orders:
        table: orders
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          customer: {type: string}
          amount: {type: decimal(12,2)}
          at: {type: timestamp_tz}
        checks:
          - not_null: [id]
          - unique: [id]
          - range: {column: amount, min: 0}
      events:
        table: events
        columns:
          name: {type: string}
          value: {type: float64}
      parted:
        table: parted
        primary_key: [id]
        partition_by: [day]
        columns:
          id: {type: int64, nullable: false}
          day: {type: date}
        checks:
          - not_null: [day]
          - range: {column: day, min: "2026-01-01"}
"""


@dataclass
class StoreFixture:
    root: Path
    store: Store
    index: ModelIndex

    def spec(self, ref: str) -> DatasetCommon:
        return self.index.datasets[ref].spec

    def dataset(self, ref: str) -> DatasetStore:
        return self.store.dataset(ref)

    def publish(self, ref: str, data: pa.Table, mode: str = "replace", *,
                max_delete_ratio: float | None = 0.5) -> Published:
        return publish(self.dataset(ref), self.spec(ref), data, keys=self.store.keys,
                       mode=mode,  # type: ignore[arg-type]
                       max_delete_ratio=max_delete_ratio)


@pytest.fixture
def shop(tmp_path: Path) -> StoreFixture:
    root = write_files(tmp_path / "model", {
        "ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
        "teams/shop/shop.yaml": TEAM,
    })
    loaded = load_model(root)
    assert loaded.ecosystem is not None and loaded.report.findings == []
    return StoreFixture(root, Store.for_model(root, loaded.ecosystem), ModelIndex(loaded.ecosystem))


def publish_computed(dataset: DatasetStore, spec: DatasetCommon, data: pa.Table,
                     keys: KeyStore, inputs: int, **options: Any) -> Published:
    """Publish ``data`` as a transformer's output computed from input version ``inputs``
    (a lineage and a definition: a version is made when only the inputs differ)."""
    return publish(dataset, spec, data, keys=keys,
                   lineage=[{"ref": "shop.events", "version": inputs}],
                   definition={"fingerprint": "f", "body": "sql", "parts": {}}, **options)


def orders(ids: range | list[int], amount: str = "1.50") -> pa.Table:
    from datetime import UTC, datetime
    from decimal import Decimal

    ids = list(ids)
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "customer": [f"c{i}" for i in ids],
        "amount": pa.array([Decimal(amount)] * len(ids), pa.decimal128(12, 2)),
        "at": pa.array([datetime(2026, 1, 1, tzinfo=UTC)] * len(ids), pa.timestamp("us", "UTC")),
    })


OrdersMaker = Callable[..., pa.Table]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the store needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
