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
from tests.store.test_conform import column_gen, columns_of, equal, nullable


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_schemas_round_trip_through_the_store(data: st.DataObject) -> None:
    gens = data.draw(st.lists(column_gen(), min_size=1, max_size=4), label="columns")
    names = [f"c{i}" for i in range(len(gens))]
    nulls_ok = {n: data.draw(st.booleans(), label=f"{n} nullable") for n in names}
    rows = data.draw(st.integers(1, 5), label="rows")
    inputs, expected = {}, {}
    for name, gen in zip(names, gens, strict=True):
        pairs = nullable(gen.pairs) if nulls_ok[name] else gen.pairs
        drawn = data.draw(st.lists(pairs, min_size=rows, max_size=rows), label=name)
        inputs[name] = pa.array([i for i, _ in drawn], type=gen.input_type)
        expected[name] = [e for _, e in drawn]
    declared = {n: g.declared for n, g in zip(names, gens, strict=True)}
    spec = SourceDataset(columns=columns_of(declared, nulls_ok), table="t")
    with tempfile.TemporaryDirectory() as tmp:
        dataset = DatasetStore(Path(tmp) / "store", "lab.samples")
        publish(dataset, spec, pa.table(inputs), keys=KeyStore(Path(tmp) / "home"))
        version = dataset.resolve(None)
        stored = dataset.scanner(version).to_table()
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
