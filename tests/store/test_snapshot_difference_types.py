"""A snapshot stored as its keyed difference compares every declared type exactly.

The same rows published again make no version (no value of any type reads as different
from its stored self), values moved to other keys publish exactly those rows as changed,
and a dropped key is a delete; the version reads back as the data published.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataferry.model.spec import SourceDataset
from dataferry.model.types import format_type, parse_type
from dataferry.store.dataset import DatasetStore, declared_types
from dataferry.store.keys import KeyStore
from dataferry.store.publish import publish
from dataferry.store.storage import decode_batch
from dataferry.store.verify import VerifyReport, verify_dataset
from tests.store.test_conform import columns_of, draw_columns, equal


def _read(dataset: DatasetStore, names: list[str]) -> dict[int, dict[str, Any]]:
    version = dataset.resolve(None)
    stored = dataset.reader(version).read_all()
    types = declared_types(version.manifest.schema)
    rows = pa.Table.from_batches([decode_batch(b, types) for b in stored.to_batches()]
                                 ).to_pylist() if stored.num_rows else []
    return {row["id"]: {n: row[n] for n in names} for row in rows}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_difference_of_random_schemas_is_exact(data: st.DataObject) -> None:
    declared, nulls_ok, inputs, expected = draw_columns(data, min_rows=2)
    names = list(declared)
    rows = len(next(iter(inputs.values())))
    columns = {"id": parse_type("int64"), **declared}
    spec = SourceDataset(columns=columns_of(columns, {"id": False, **nulls_ok}), table="t",
                         primary_key=["id"])
    ids = pa.array(range(rows), pa.int64())
    table = pa.table({"id": ids, **inputs})
    with tempfile.TemporaryDirectory() as tmp:
        dataset = DatasetStore(Path(tmp) / "store", "lab.samples")
        keys = KeyStore(Path(tmp) / "home")
        assert publish(dataset, spec, table, keys=keys).version == 1
        again = publish(dataset, spec, table, keys=keys, by_key=True)
        assert again.unchanged and dataset.head_number() == 1

        # Every row's values go to the next key: a change wherever two neighbours differ.
        moved = pa.table({"id": pa.array([(i + 1) % rows for i in range(rows)], pa.int64()),
                          **inputs})
        published = publish(dataset, spec, moved, keys=keys, by_key=True)
        want = {(i + 1) % rows: {n: expected[n][i] for n in names} for i in range(rows)}
        got = _read(dataset, names)
        assert got.keys() == want.keys()
        for key, row in want.items():
            for name in names:
                assert equal([got[key][name]], [row[name]]), (name, declared[name], got[key])
        if not published.unchanged:
            assert published.added_rows == published.removed_rows  # changes only
            assert 0 < published.added_rows <= rows

        # One key gone: a delete, nothing else.
        before = dataset.head_number()
        fewer = publish(dataset, spec, moved.slice(0, rows - 1),  # the row of key 0
                        keys=keys, by_key=True, max_delete_ratio=None)
        # Maps are published as a replace: DuckDB cannot hold a map with a repeated key.
        replaced = any("map<" in format_type(t) for t in declared.values())
        assert (fewer.version, fewer.added_rows, fewer.removed_rows, fewer.rows) == (
            (before or 0) + 1, *((rows - 1, rows) if replaced else (0, 1)), rows - 1)
        assert 0 not in _read(dataset, names)
        report = VerifyReport()
        verify_dataset(dataset, report)
        assert report.ok, report.problems


def test_a_zero_that_changes_sign_is_a_change(tmp_path: Path) -> None:
    """SQL's equality takes -0.0 for 0.0; the store keeps the sign, so the flip is a change
    (in a float column and inside a list of floats)."""
    columns = {"id": parse_type("int64"), "x": parse_type("float64"),
               "xs": parse_type("list<float32>")}
    spec = SourceDataset(columns=columns_of(columns, {"id": False, "x": True, "xs": True}),
                         table="t", primary_key=["id"])
    dataset = DatasetStore(tmp_path / "store", "lab.zeros")
    keys = KeyStore(tmp_path / "home")

    def table(zero: float) -> pa.Table:
        return pa.table({"id": pa.array([1, 2], pa.int64()), "x": [zero, 1.5],
                         "xs": pa.array([[1.0], [zero]], pa.list_(pa.float32()))})

    publish(dataset, spec, table(0.0), keys=keys)
    flipped = publish(dataset, spec, table(-0.0), keys=keys, by_key=True)
    assert not flipped.unchanged and flipped.added_rows == 2
    got = _read(dataset, ["x", "xs"])
    assert str(got[1]["x"]) == "-0.0" and str(got[2]["xs"][0]) == "-0.0"
    assert publish(dataset, spec, table(-0.0), keys=keys, by_key=True).unchanged
