"""The binary values of a slot (``cdc_binary``): each type's send format, written here as
PostgreSQL writes it, decodes to the value a table read gives; infinities and values of
the wrong width are refused with ``BadValue``."""

from __future__ import annotations

import math
import struct
import uuid
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataferry.connectors.postgres import cdc_binary as binary
from dataferry.connectors.postgres import reading as r

EPOCH_2000 = datetime(2000, 1, 1)


def _column(values: list[object], encode: object) -> pa.Array:
    return pa.array([None if v is None else encode(v)  # type: ignore[operator]
                     for v in values], pa.binary())


def _binary(values: list[bytes | None]) -> pa.Array:
    return pa.array(values, pa.binary())


def _micros(value: datetime) -> int:
    return (value.replace(tzinfo=None) - EPOCH_2000) // timedelta(microseconds=1)


CASES = {  # oid: (values, PostgreSQL's send format of one value)
    r.INT2: (st.integers(-(2**15), 2**15 - 1), lambda v: struct.pack(">h", v)),
    r.INT4: (st.integers(-(2**31), 2**31 - 1), lambda v: struct.pack(">i", v)),
    r.INT8: (st.integers(-(2**63), 2**63 - 1), lambda v: struct.pack(">q", v)),
    r.FLOAT8: (st.floats(allow_nan=False), lambda v: struct.pack(">d", v)),
    r.FLOAT4: (st.floats(width=32, allow_nan=False), lambda v: struct.pack(">f", v)),
    r.BOOL: (st.booleans(), lambda v: bytes([v])),
    r.TEXT: (st.text(st.characters(exclude_characters="\0", exclude_categories=["Cs"])),
             lambda v: v.encode()),
    r.BYTEA: (st.binary(), lambda v: v),
    r.UUID: (st.uuids(), lambda v: v.bytes),
    r.DATE: (st.dates(), lambda v: struct.pack(">i", (v - date(2000, 1, 1)).days)),
    r.TIME: (st.times(), lambda v: struct.pack(">q", (
        (v.hour * 60 + v.minute) * 60 + v.second) * 1_000_000 + v.microsecond)),
    r.TIMESTAMP: (st.datetimes(), lambda v: struct.pack(">q", _micros(v))),
    r.TIMESTAMPTZ: (st.datetimes(timezones=st.just(UTC)),
                    lambda v: struct.pack(">q", _micros(v))),
}


@pytest.mark.parametrize("oid", sorted(CASES))
@given(data=st.data())
def test_send_formats_decode_to_the_values(oid: int, data: st.DataObject) -> None:
    strategy, encode = CASES[oid]
    values = data.draw(st.lists(st.none() | strategy, max_size=20))
    array = binary.DECODERS[oid](_column(values, encode))
    got = array.to_pylist()
    if oid == r.UUID:
        got = [None if v is None else uuid.UUID(bytes=v) for v in got]
    if oid == r.FLOAT4:
        values = [None if v is None else struct.unpack(">f", struct.pack(">f", v))[0]
                  for v in values]
    assert len(got) == len(values)
    for want, have in zip(values, got, strict=True):
        assert have == want or (isinstance(want, float) and math.isnan(want)
                                and math.isnan(have))
        if isinstance(want, float) and want == 0:
            assert math.copysign(1, have) == math.copysign(1, want)  # -0.0 stays


def test_jsonb_loses_its_version_byte_and_refuses_another() -> None:
    assert binary.DECODERS[r.JSONB](_binary([b'\x01{"a": 1}', None])).to_pylist() == ['{"a": 1}', None]
    with pytest.raises(r.BadValue, match="binary version"):
        binary.DECODERS[r.JSONB](_binary([b'\x02{"a": 1}']))


@pytest.mark.parametrize(("oid", "raw"), [
    (r.TIMESTAMPTZ, struct.pack(">q", 2**63 - 1)), (r.TIMESTAMP, struct.pack(">q", -(2**63))),
    (r.DATE, struct.pack(">i", 2**31 - 1)), (r.DATE, struct.pack(">i", -(2**31))),
])
def test_infinity_fails_the_table_reads_range_check(oid: int, raw: bytes) -> None:
    plan = r.plan_column("c", "c", r.TypeInfo(oid, -1, "", "b", 0, ""))
    array = binary.DECODERS[oid](_binary([raw, None]))
    assert plan.fix is not None
    with pytest.raises(r.BadValue, match="infinity"):
        plan.fix(array)


def test_the_earliest_date_and_time_postgresql_stores_still_fit() -> None:
    """4714-11-24 BC: the smallest value of both, the bound of the range check."""
    days = -2_451_545  # Julian day 0, in days since 2000-01-01
    for oid, raw in ((r.DATE, struct.pack(">i", days)),
                     (r.TIMESTAMP, struct.pack(">q", days * 86_400_000_000))):
        plan = r.plan_column("c", "c", r.TypeInfo(oid, -1, "", "b", 0, ""))
        assert plan.fix is not None
        plan.fix(binary.DECODERS[oid](_binary([raw])))


def test_a_value_of_the_wrong_width_is_refused() -> None:
    with pytest.raises(r.BadValue, match="not 8 bytes"):
        binary.DECODERS[r.INT8](_binary([struct.pack(">i", 1)]))
    with pytest.raises(r.BadValue, match="not 16 bytes"):
        binary.DECODERS[r.UUID](_binary([b"short"]))


@given(st.lists(st.none() | st.integers(-(2**63), 2**63 - 1), max_size=20),
       st.integers(0, 5))
def test_a_sliced_or_large_array_decodes_the_same(numbers: list[int | None],
                                                  cut: int) -> None:
    """Arrays as concatenation hands them over: an offset into shared buffers, or large
    offsets (a batch past 2 GiB)."""
    raw = pa.array([None, *[None if n is None else struct.pack(">q", n) for n in numbers]],
                   pa.binary())
    for values in (raw.slice(1), raw.cast(pa.large_binary()).slice(1)):
        assert binary.DECODERS[r.INT8](values).to_pylist() == numbers
    assert binary.DECODERS[r.INT8](raw.slice(min(cut, len(raw)))).to_pylist() == \
        [None, *numbers][min(cut, len(raw)):]


def test_only_plain_types_read_as_they_are_get_a_decoder() -> None:
    def decoder(oid: int, kind: str = "b", element: int = 0) -> object:
        info = r.TypeInfo(oid, -1, "", kind, element, "b" if element else "")
        return binary.decoder("c", info, r.plan_column("c", "c", info))

    assert decoder(r.INT8) is not None and decoder(r.TIMESTAMPTZ) is not None
    assert decoder(12345, kind="e") is not None  # an enum: its label
    for other in (r.NUMERIC, r.INTERVAL, r.MONEY, r.OID, 12345):
        assert decoder(other) is None
    assert decoder(1007, element=r.INT4) is None  # int4[]
