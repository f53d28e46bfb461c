"""``QueryBinder.bind`` takes a shortcut (the inputs as a ``WITH`` instead of views made
and dropped per query): it must give what binding over views gives, as a run sees the
inputs, for every query: the same columns and types, or the same failure."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataferry.engine.bind import BindFailure, OutputColumn, QueryBinder

INPUTS = {
    "orders": pa.schema([("id", pa.int64()), ("customer_id", pa.int64()),
                         ("amount", pa.decimal128(12, 2)), ("note", pa.string())]),
    "customers": pa.schema([("id", pa.int64()), ("name", pa.string()),
                            ("born", pa.date32())]),
}


@pytest.fixture(scope="module")
def binder() -> Iterator[QueryBinder]:
    made = QueryBinder()
    yield made
    made.close()


def both(binder: QueryBinder, sql: str) -> tuple[list[OutputColumn] | BindFailure,
                                                 list[OutputColumn] | BindFailure]:
    return binder.bind(sql, INPUTS), binder.bind_over_views(sql, INPUTS)


@pytest.mark.parametrize("sql", [
    "select o.id, c.name from orders o join customers c on c.id = o.customer_id",
    "select id, id from orders",  # a name twice: kept twice
    "select o.id, c.id from orders o join customers c on c.id = o.customer_id",
    "select * from orders;",
    "select * from orders ; ;\n",
    "select id from orders -- the ids;",
    "select id from orders\n/* the end */",
    "with orders as (select 1 as x) select * from orders",  # its own orders hides the input
    "WITH customers AS (SELECT * FROM customers) select name from customers",
    "select * from (with orders as (select 'a' as id) select * from orders)",
    "select * from temp.orders",
    "select * from main.orders",
    "select o from orders o",  # the whole row, a struct
    "from customers select name",
    "summarize orders",
    "select sum(amount) from orders union all select 1.5",
    "select nope from orders",
    "select * from nowhere",
    "select x.id from orders",
    "select * from query_table('orders')",
    "select * from read_csv('/etc/passwd')",
])
def test_the_shortcut_binds_as_views_do(binder: QueryBinder, sql: str) -> None:
    shortcut, views = both(binder, sql)
    assert shortcut == views


def test_a_querys_own_with_is_what_it_reads(binder: QueryBinder) -> None:
    bound = binder.bind("with orders as (select 1 as x) select * from orders", INPUTS)
    assert isinstance(bound, list)
    assert [(c.name, c.duckdb_type) for c in bound] == [("x", "INTEGER")]


NAMES = st.sampled_from(["id", "name", "amount", "note", "customer_id", "born", "x", "nope"])
TABLES = st.sampled_from(["orders", "customers", "temp.orders", "nowhere", "x"])


@st.composite
def queries(draw: st.DrawFn) -> str:
    """Queries over the inputs, valid or not: columns that exist or not, aliases that
    repeat, a WITH of its own that may hide an input, subqueries, what ends it."""
    table = draw(TABLES)
    alias = draw(st.sampled_from(["", " t", " orders", " customers"]))
    columns = draw(st.lists(st.one_of(
        NAMES,
        NAMES.map(lambda n: f"t.{n}"),
        st.tuples(NAMES, NAMES).map(lambda p: f"{p[0]} as {p[1]}"),
        st.sampled_from(["*", "count(*)", "42", "null", "amount * 2", "t", "upper(name)"]),
    ), min_size=1, max_size=4))
    sql = f"select {', '.join(columns)} from {table}{alias}"
    if draw(st.booleans()):
        sql += f" where {draw(NAMES)} is not null"
    if draw(st.booleans()):
        inner = draw(st.sampled_from(["orders", "customers", "x"]))
        source = draw(st.sampled_from(["orders", "customers"]))
        picked = draw(st.sampled_from(["*", "id", "id, 1 as x", "name as id"]))
        sql = f"with {inner} as (select {picked} from {source}) {sql}"
    if draw(st.booleans()):
        sql = f"select * from ({sql})"
    return sql + draw(st.sampled_from(["", ";", " ;\n", " -- end", "\n/* end */", " union "
                                       "all select 1"]))


@given(sql=queries())
@settings(max_examples=300, deadline=None)
def test_generated_queries_bind_as_over_views(binder: QueryBinder, sql: str) -> None:
    shortcut, views = both(binder, sql)
    assert shortcut == views


def test_columns_that_differ_only_in_case_bind_as_the_run_reads_them() -> None:
    """DDL refuses two columns ``on`` and ``ON``, where the run's Arrow view takes them
    (as ``on`` and ``ON_1``). The binder must make that input as the run does, and keep
    answering for it query after query (it once remembered the table it failed to make,
    so the second query over that input met 'table does not exist')."""
    binder = QueryBinder()
    try:
        inputs = {"null": pa.schema([("on", pa.float64()), ("ON", pa.float64())])}
        for sql in ['select null as "null" /* NO */', 'select * from "null"',
                    'select * from "null"']:
            assert binder.bind(sql, inputs) == binder.bind_over_views(sql, inputs)
        bound = binder.bind('select * from "null"', inputs)
        assert isinstance(bound, list)
        assert [c.name for c in bound] == ["on", "ON_1"]
    finally:
        binder.close()
