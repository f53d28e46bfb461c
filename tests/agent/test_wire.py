"""What hub and agent send each other round-trips: the read request (whatever its cursor
value), the live columns with their Arrow types, and the text an agent signs."""

from __future__ import annotations

from datetime import UTC

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from dataferry.agent.wire import (
    columns_from_json,
    columns_to_json,
    ingest_payload,
    request_of,
    signed_text,
    source_of,
)
from dataferry.connectors.base import ReadRequest, SourceColumn
from dataferry.model.spec import PostgresSource, SourceDataset

SPEC = SourceDataset.model_validate({
    "table": "customers", "capture": "incremental", "cursor": "updated_at",
    "primary_key": ["id"], "columns": {"id": {"type": "int64", "nullable": False},
                                       "updated_at": {"type": "timestamp_tz"}}})
SOURCE = PostgresSource.model_validate({
    "kind": "postgres", "network": "hq-lan", "dsn": "postgresql://reader@erp/erp",
    "password": "${env:ERP_PASSWORD}", "datasets": {"customers": SPEC.model_dump()}})
CURSORS = st.one_of(
    st.none(), st.integers(-2**62, 2**62), st.text(max_size=40),
    st.datetimes(timezones=st.just(UTC)), st.datetimes())


@given(since=CURSORS, state=st.none() | st.dictionaries(
    st.sampled_from(["column", "value", "kind"]), st.text(max_size=20)))
def test_the_read_request_round_trips(since: object, state: dict[str, str] | None) -> None:
    request = ReadRequest(dataset="crm.customers", spec=SPEC, columns=["id", "updated_at"],
                          state=state, since=since, lag_seconds=300.0)
    payload = ingest_payload("crm.customers", "crm.erp", SOURCE, request)
    again = request_of(payload)
    assert (again.dataset, again.spec, again.columns, again.state, again.since,
            again.lag_seconds) == (request.dataset, request.spec, request.columns,
                                   request.state, since, request.lag_seconds)
    assert type(again.since) is type(since)
    source = source_of(payload)
    assert source == SOURCE
    assert payload["source"]["password"] == "${env:ERP_PASSWORD}"  # a reference, unresolved


def test_live_columns_keep_their_arrow_types() -> None:
    columns = [SourceColumn("id", "bigint", pa.int64(), False),
               SourceColumn("amount", "numeric(12,2)", pa.decimal128(12, 2)),
               SourceColumn("at", "timestamp with time zone", pa.timestamp("us", "UTC")),
               SourceColumn("tags", "text[]", pa.list_(pa.string()))]
    assert columns_from_json(columns_to_json(columns)) == columns


@given(st.dictionaries(st.text(max_size=10), st.integers() | st.text(max_size=10)))
def test_the_signed_text_does_not_depend_on_key_order(result: dict[str, object]) -> None:
    backwards = dict(reversed(list(result.items())))
    assert signed_text(1, 2, True, result) == signed_text(1, 2, True, backwards)
    assert signed_text(1, 2, True, result) != signed_text(1, 3, True, result)
    assert signed_text(1, 2, True, result) != signed_text(1, 2, False, result)
