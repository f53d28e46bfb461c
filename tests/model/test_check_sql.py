"""``ferry check`` binds each SQL transformer's query against its inputs' declared schemas:
every problem DuckDB would raise at run time, found without data, at the file:line:col of
the SQL (in the YAML block or the ``sql_file``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataferry.model.check import check_model
from dataferry.model.sqlcheck import fits
from dataferry.model.sqlplace import yaml_place
from dataferry.model.types import parse_type
from tests.conftest import Result

SHOP = """\
team: shop
zone: eu
owners: [sam@acme.example]
sources:
  db:
    kind: sqlite
    path: shop.db
    datasets:
      customers:
        table: customers
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          name: {type: string}
          country: {type: string(2)}
      orders:
        table: orders
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          customer_id: {type: int64}
          amount: {type: decimal(12,2)}
          note: {type: json}
transformers:
  revenue:
    inputs: [shop.customers, shop.orders]
    sql: |
      select c.id, c.country,
             cast(sum(o.amount) as decimal(18,2)) as revenue
      from customers c join orders o on o.customer_id = c.id
      group by 1, 2
    primary_key: [id]
    columns:
      id: {type: int64, nullable: false}
      country: {type: string(2)}
      revenue: {type: decimal(18,2)}
"""

Finding = tuple[str, str, str, int, int, str]


def findings(root: Path) -> list[Finding]:
    return [(f.severity, f.code, f.file, f.line, f.column, f.message)
            for f in check_model(root).findings]


def one(root: Path) -> Finding:
    found = findings(root)
    assert len(found) == 1, found
    return found[0]


def test_a_query_that_binds_has_no_findings(model: Callable[..., Path]) -> None:
    assert findings(model({"teams/shop/shop.yaml": SHOP})) == []


def test_a_syntax_error_points_at_its_line_and_column_in_the_yaml(
        model: Callable[..., Path]) -> None:
    root = model({"teams/shop/shop.yaml": SHOP.replace(
        "from customers c join", "form customers c join")})
    severity, code, file, line, column, message = one(root)
    # YAML line 30 is the SQL's third line, indented by 6
    assert (severity, code, file, line, column) == ("error", "parse-error",
                                                   "teams/shop/shop.yaml", 30, 7)
    assert 'syntax error at or near "form"' in message
    assert "transformer shop.revenue" in message


def test_a_table_that_is_not_an_input_says_to_add_it(model: Callable[..., Path]) -> None:
    root = model({"teams/shop/shop.yaml": SHOP.replace(
        "inputs: [shop.customers, shop.orders]", "inputs: [shop.customers]")})
    _, code, _, line, column, message = one(root)
    assert (code, line, column) == ("unknown-reference", 30, 29)
    assert "table 'orders' is not among the transformer's inputs" in message
    assert "customers = shop.customers" in message
    assert "add shop.orders to inputs:" in message


def test_an_unknown_column_suggests_the_closest_name(model: Callable[..., Path]) -> None:
    root = model({"teams/shop/shop.yaml": SHOP.replace("select c.id, c.country,",
                                                       "select c.id, c.contry,")})
    _, code, _, line, column, message = one(root)
    assert (code, line, column) == ("unknown-reference", 28, 22)
    assert "unknown column 'contry'; did you mean 'country'?" in message


def test_an_unknown_column_without_a_close_name_lists_the_inputs_columns(
        model: Callable[..., Path]) -> None:
    root = model({"teams/shop/shop.yaml": SHOP.replace("select c.id, c.country,",
                                                       "select c.id, c.zzz as country,")})
    message = one(root)[5]
    assert "unknown column 'zzz': none of the inputs has it" in message
    assert "customers: id, name, country; orders: id, customer_id, amount, note" in message


def test_sql_file_positions_are_the_sql_files_own(model: Callable[..., Path]) -> None:
    sql = "-- revenue\nselect c.id, c.country,\n  sum(o.amont) as revenue\nfrom customers c " \
          "join orders o on o.customer_id = c.id group by 1, 2\n"
    shop = SHOP.replace(SHOP[SHOP.index("    sql: |"):SHOP.index("    primary_key: [id]\n    columns:\n      id: {type: int64, nullable: false}\n      country")],
                        "    sql_file: revenue.sql\n")
    root = model({"teams/shop/shop.yaml": shop, "teams/shop/revenue.sql": sql})
    _, code, file, line, column, message = one(root)
    assert (code, file, line, column) == ("unknown-reference", "teams/shop/revenue.sql", 3, 9)
    assert "did you mean 'amount'?" in message


def test_declared_column_missing_from_the_query(model: Callable[..., Path]) -> None:
    root = model({"teams/shop/shop.yaml": SHOP.replace(
        "      revenue: {type: decimal(18,2)}\n",
        "      revenue: {type: decimal(18,2)}\n      orders: {type: int64}\n")})
    severity, code, _, line, column, message = one(root)
    assert (severity, code, line, column) == ("error", "schema-mismatch", 37, 7)
    assert "declared column 'orders' is not in the query's result (it yields id, country, " \
           "revenue)" in message


def test_undeclared_query_column_is_a_warning_like_ingest(model: Callable[..., Path]) -> None:
    root = model({"teams/shop/shop.yaml": SHOP.replace(
        "select c.id, c.country,", "select c.id, c.country, min(c.name) as label,")})
    severity, code, _, line, column, message = one(root)
    assert (severity, code, line, column) == ("warning", "schema-mismatch", 28, 46)
    assert "yields column 'label', which is not declared; it is dropped" in message


def test_a_type_the_declared_one_cannot_hold_is_an_error(model: Callable[..., Path]) -> None:
    root = model({"teams/shop/shop.yaml": SHOP.replace(
        "cast(sum(o.amount) as decimal(18,2)) as revenue", "avg(o.amount) as revenue")})
    severity, code, _, line, column, message = one(root)
    assert (severity, code, line, column) == ("error", "schema-mismatch", 36, 23)
    assert "the query yields DOUBLE (float64), which the declared decimal(18,2) cannot hold" \
        in message
    assert "CAST(... AS DECIMAL(18,2))" in message


def test_text_where_an_integer_is_declared_is_an_error(model: Callable[..., Path]) -> None:
    root = model({"teams/shop/shop.yaml": SHOP.replace("select c.id, c.country,",
                                                       "select c.name as id, c.country,")})
    severity, code, _, _, _, message = one(root)
    assert (severity, code) == ("error", "schema-mismatch")
    assert "column 'id': the query yields VARCHAR (string)" in message


def test_a_narrowing_is_a_warning(model: Callable[..., Path]) -> None:
    root = model({"teams/shop/shop.yaml": SHOP.replace(
        "cast(sum(o.amount) as decimal(18,2)) as revenue", "sum(o.amount) as revenue")})
    severity, code, _, _, _, message = one(root)
    assert (severity, code) == ("warning", "schema-mismatch")
    assert "DECIMAL(38,2) (decimal(38,2)), which decimal(18,2) holds only in part" in message


def test_other_binding_errors_and_file_access(model: Callable[..., Path]) -> None:
    root = model({"teams/shop/shop.yaml": SHOP.replace(
        "cast(sum(o.amount) as decimal(18,2)) as revenue",
        "cast(sum(o.amount) as decimal(18,2)) as revenue, frobnicate(1) as x")})
    severity, code, _, line, column, message = one(root)
    assert (severity, code, line, column) == ("error", "sql-error", 29, 63)
    assert "frobnicate" in message
    root = model({"teams/shop/shop.yaml": SHOP.replace(
        "join orders o", "join read_csv('/etc/passwd') o")})
    severity, code, *_, message = one(root)
    assert (severity, code) == ("error", "sql-error")
    assert "reads outside its inputs" in message


def test_masked_input_columns_are_text_in_the_query(model: Callable[..., Path]) -> None:
    """A masked column reaches the SQL as its keyed hash (text): summing it cannot bind."""
    shop = SHOP.replace("    inputs: [shop.customers, shop.orders]\n",
                        "    inputs: [shop.customers, shop.orders]\n"
                        "    mask: {shop.orders: [amount]}\n")
    message = one(model({"teams/shop/shop.yaml": shop}))[5]
    assert "sum(VARCHAR)" in message


def test_two_inputs_with_one_name_are_team_dataset(model: Callable[..., Path]) -> None:
    other = SHOP.replace("team: shop", "team: web").replace("transformers:", "x_unused:")
    other = other[:other.index("x_unused:")]
    shop = SHOP.replace("inputs: [shop.customers, shop.orders]",
                        "inputs: [shop.customers, shop.orders, web.orders]")
    root = model({"teams/shop/shop.yaml": shop, "teams/web/web.yaml": other})
    message = one(root)[5]
    assert "table 'orders' is not among the transformer's inputs" in message
    assert "shop_orders = shop.orders, web_orders = web.orders" in message


def test_python_transformers_and_unreadable_sql_files_are_not_bound(
        model: Callable[..., Path]) -> None:
    shop = SHOP.replace(SHOP[SHOP.index("    sql: |"):SHOP.index("    primary_key: [id]\n    columns:\n      id: {type: int64, nullable: false}\n      country")],
                        "    python: transforms:revenue\n")
    assert findings(model({"teams/shop/shop.yaml": shop})) == []
    shop = shop.replace("python: transforms:revenue", "sql_file: missing.sql")
    assert findings(model({"teams/shop/shop.yaml": shop})) == []


def test_several_statements_leave_nothing_behind(model: Callable[..., Path]) -> None:
    """A temp table made by one transformer's SQL is not seen by the next one's."""
    shop = SHOP + """\
  a_first:
    inputs: [shop.orders]
    sql: create temp table leftovers as select id from orders; select id from leftovers
    columns: {id: {type: int64}}
  b_second:
    inputs: [shop.orders]
    sql: select id from leftovers
    columns: {id: {type: int64}}
"""
    severity, code, _, _, _, message = one(model({"teams/shop/shop.yaml": shop}))
    assert (code, "b_second" in message, "leftovers" in message) == \
        ("unknown-reference", True, True)



def test_a_querys_own_with_hides_an_input_of_the_same_name(model: Callable[..., Path]) -> None:
    """As at run time, a query's own ``WITH customers AS (...)`` is the table it reads, not
    the input: here its country is a number, which the declared string(2) cannot hold."""
    shop = SHOP.replace("    sql: |\n      select c.id,",
                        "    sql: |\n      with customers as (select id, 42 as country from "
                        "customers)\n      select c.id,")
    severity, code, _, _, _, message = one(model({"teams/shop/shop.yaml": shop}))
    assert (severity, code) == ("error", "schema-mismatch")
    assert "column 'country': the query yields INTEGER (int32)" in message
    # ... and one that reads the input under its own name and keeps its columns binds
    shop = SHOP.replace("    sql: |\n      select c.id,",
                        "    sql: |\n      WITH customers AS (SELECT * FROM customers "
                        "WHERE id > 0)\n      select c.id,")
    assert findings(model({"teams/shop/shop.yaml": shop})) == []


def test_a_column_yielded_twice_is_reported_at_its_first_mention(
        model: Callable[..., Path]) -> None:
    root = model({"teams/shop/shop.yaml": SHOP.replace("select c.id, c.country,",
                                                       "select c.id, c.country, count(*) as id,")})
    severity, code, _, line, column, message = one(root)
    assert (severity, code, line, column) == ("error", "schema-mismatch", 28, 16)
    assert "the query yields column 'id' more than once" in message


@pytest.mark.parametrize("end", [";", " ;  \n", "\n-- the revenue per customer", " -- done;",
                                 "\n/* the end */"])
def test_what_follows_the_query_changes_nothing(model: Callable[..., Path], end: str) -> None:
    shop = SHOP.replace("      group by 1, 2\n", "      group by 1, 2" + end.replace(
        "\n", "\n      ") + "\n")
    assert findings(model({"teams/shop/shop.yaml": shop})) == []
    broken = shop.replace("select c.id, c.country,", "select c.id, c.contry,")
    _, code, _, line, column, message = one(model({"teams/shop/shop.yaml": broken}))
    assert (code, line, column) == ("unknown-reference", 28, 22)


def test_an_input_named_with_its_schema_binds_as_at_run_time(
        model: Callable[..., Path]) -> None:
    """A run registers each input as a temporary view: ``temp.orders`` names it too."""
    root = model({"teams/shop/shop.yaml": SHOP.replace("join orders o", "join temp.orders o")})
    assert findings(root) == []


def test_json_output_keeps_its_shape(model: Callable[..., Path],
                                     ferry: Callable[..., Result]) -> None:
    root = model({"teams/shop/shop.yaml": SHOP.replace("select c.id, c.country,",
                                                       "select c.id, c.contry,")})
    done = ferry("check", "--json", "--model", root)
    assert done.code == 1, done
    document = json.loads(done.out)
    assert document["ok"] is False
    assert [sorted(f) for f in document["findings"]] == \
        [["code", "column", "file", "line", "message", "severity"]]
    assert document["findings"][0]["line"] == 28


@pytest.mark.parametrize(("found", "declared", "verdict"), [
    ("int32", "int64", None),
    ("int64", "int32", "warning"),
    ("decimal(38,0)", "int64", "warning"),  # sum() of integers
    ("decimal(12,2)", "int64", "error"),
    ("float64", "decimal(12,2)", "error"),
    ("int32", "float64", None),
    ("int64", "float64", "warning"),
    ("string", "int64", "error"),
    ("string", "string(2)", None),  # DuckDB has no VARCHAR(n)
    ("string", "uuid", None),  # an input's uuid is text in the SQL
    ("timestamp_tz", "timestamp", "error"),
    ("timestamp", "timestamp_tz", None),
    ("list<int64>", "list<int32>", "warning"),
    ("struct<a:int64>", "struct<a:int64, b:string>", "error"),
    ("bool", "int64", "error"),
])
def test_type_fit(found: str, declared: str, verdict: str | None) -> None:
    result = fits(parse_type(found), parse_type(declared))
    assert (result[0] if result else None) == verdict


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="abc ,()'xyz_", min_size=1, max_size=30).filter(
    lambda s: s.strip() == s and ":" not in s and "#" not in s), min_size=1, max_size=6),
    st.integers(min_value=2, max_value=8))
def test_literal_block_offsets_map_to_the_yaml_text(lines: list[str], indent: int) -> None:
    """Every character of a literal block's SQL maps to the same character in the file."""
    pad = " " * indent
    text = "x:\n  sql: |\n" + "".join(f"{pad}{line}\n" for line in lines) + "y: 1\n"
    sql = "".join(f"{line}\n" for line in lines)
    place = yaml_place("f.yaml", text, 2, 8, sql)
    file_lines = text.splitlines()
    for offset, char in enumerate(sql):
        if char == "\n":
            continue
        line, column = place.position(offset)
        assert file_lines[line - 1][column - 1] == char
