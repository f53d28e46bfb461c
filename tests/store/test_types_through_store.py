"""Every declared type round-trips exactly through the store (publish -> read back)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataferry.model.spec import SourceDataset
from dataferry.model.types import from_arrow_field
from dataferry.store.dataset import DatasetStore, declared_types
from dataferry.store.keys import KeyStore
from dataferry.store.publish import publish
from dataferry.store.storage import decode_batch
from dataferry.store.verify import VerifyReport, verify_dataset
from tests.store.test_conform import columns_of, draw_columns, equal


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_schemas_round_trip_through_the_store(data: st.DataObject) -> None:
    declared, nulls_ok, inputs, expected = draw_columns(data, min_rows=1)
    names = list(declared)
    rows = len(next(iter(inputs.values())))
    spec = SourceDataset(columns=columns_of(declared, nulls_ok), table="t")
    with tempfile.TemporaryDirectory() as tmp:
        dataset = DatasetStore(Path(tmp) / "store", "lab.samples")
        publish(dataset, spec, pa.table(inputs), keys=KeyStore(Path(tmp) / "home"))
        version = dataset.resolve(None)
        stored = dataset.reader(version).read_all()
        assert [from_arrow_field(f) for f in stored.schema] == list(declared.values())
        got = pa.Table.from_batches(
            [decode_batch(b, declared_types(version.manifest.schema)) for b in stored.to_batches()]
        ).to_pydict() if stored.num_rows else {n: [] for n in names}
        for name in names:
            assert equal(got[name], expected[name]), (name, declared[name], got[name],
                                                      expected[name])
        # Delta readers accept every stored type, and the data verifies.
        assert DeltaTable(str(dataset.path)).to_pyarrow_table().num_rows == rows
        report = VerifyReport()
        verify_dataset(dataset, report)
        assert report.ok, report.problems
