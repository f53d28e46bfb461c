"""The response format a capabilities header gets, and the widening Delta readers need."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataferry.sharing.files import signed_schema
from dataferry.sharing.formats import FormatError, capabilities


@pytest.mark.parametrize(("header", "chosen", "features"), [
    ("", "parquet", set()),
    ("responseformat=delta;readerfeatures=deletionvectors,columnmapping,timestampntz",
     "delta", {"deletionvectors", "columnmapping", "timestampntz"}),
    ("responseformat=delta,parquet;readerfeatures=deletionvectors", "parquet",
     {"deletionvectors"}),
    ("ResponseFormat = DELTA ; ReaderFeatures = TimestampNtz", "delta", {"timestampntz"}),
])
def test_a_header_chooses_the_format(header: str, chosen: str, features: set[str]) -> None:
    asked = capabilities(header)
    assert (asked.format, set(asked.reader_features)) == (chosen, features)
    assert asked.header == {"delta-sharing-capabilities": f"responseformat={chosen}"}


@given(st.text(alphabet=st.sampled_from("=;, abcdeltapruqfomsx\u00e9"), max_size=60))
def test_any_header_gets_a_format_or_a_format_error(header: str) -> None:
    try:
        asked = capabilities(header)
    except FormatError as error:
        assert "responseformat=parquet or responseformat=delta" in str(error)
    else:
        assert asked.format in ("parquet", "delta")


def test_unsigned_integers_widen_to_signed_types_holding_every_value() -> None:
    batch = pa.RecordBatch.from_pydict(
        {"a": pa.array([255], pa.uint8()), "b": pa.array([65535], pa.uint16()),
         "c": pa.array([4_294_967_295], pa.uint32()),
         "d": pa.array([18_446_744_073_709_551_615], pa.uint64()),
         "e": pa.array(["x"], pa.string())})
    wide = batch.cast(signed_schema(batch.schema))
    assert [f.type for f in wide.schema] == [pa.int16(), pa.int32(), pa.int64(),
                                             pa.decimal128(20, 0), pa.string()]
    assert wide.to_pylist()[0]["d"] == 18_446_744_073_709_551_615
    assert wide.to_pylist()[0]["c"] == 4_294_967_295
