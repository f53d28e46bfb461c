"""A transformer is held to the column rules consumers are: across zones it may read a
restricted or pii column only masked (``mask:``), and its owners must approve its team.

Which columns it reads comes from its SQL (sqlglot); a Python transformer, ``select *``
and whatever cannot be resolved count as reading every column.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from dataferry.model.check import check_model

pytestmark = pytest.mark.security

CRM = """\
team: crm
zone: eu
owners: [alice@acme.example]
sources:
  crmdb:
    kind: sqlite
    path: crm.db
    datasets:
      customers:
        table: customers
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          email: {type: string, classification: restricted, pii: true}
          country: {type: string(2)}
"""

SALES = """\
team: sales
zone: us
owners: [sam@acme.example]
transformers:
  contacts:
    inputs: [crm.customers]
    sql: {sql}
    columns: {{id: int64, email: string}}
"""

Finding = tuple[str, str, int, int, str]


def findings(root: Path) -> list[Finding]:
    """The governance findings: the queries here read columns in every way, mostly not
    producing the declared ones, which the SQL binding reports (test_check_sql.py)."""
    return [(f.code, f.file, f.line, f.column, f.message) for f in check_model(root).findings
            if not _from_binding(f.code, f.message)]


def _from_binding(code: str, message: str) -> bool:
    return code in ("schema-mismatch", "sql-error") or (
        code in ("parse-error", "unknown-reference") and re.match(
            r"transformer [\w.]+: (the SQL does not parse|unknown column|table '.*' is not "
            "among)", message) is not None)


def sales(sql: str, extra: str = "") -> str:
    return SALES.format(sql=sql) + extra


def test_reading_a_restricted_column_across_zones_is_a_policy_violation(
        model: Callable[..., Path]) -> None:
    root = model({"teams/crm/crm.yaml": CRM,
                  "teams/sales/sales.yaml": sales("select id, email from customers")})
    [(code, file, line, column, message)] = findings(root)
    assert (code, file, line, column) == ("policy-violation", "teams/sales/sales.yaml", 6, 14)
    assert "transformer sales.contacts" in message and "crm.customers" in message
    assert "'email'" in message and "classified restricted" in message
    assert "mask: {crm.customers: [email]}" in message  # what to do


@pytest.mark.parametrize("sql", [
    "select id, country from customers",
    "select c.id, upper(c.country) as country from customers c where c.id > 0 order by 1",
    "select id, count(*) as n from customers group by id",
    "select * exclude (email) from customers",
])
def test_no_finding_when_the_column_is_not_read(model: Callable[..., Path], sql: str) -> None:
    root = model({"teams/crm/crm.yaml": CRM, "teams/sales/sales.yaml": sales(sql)})
    assert findings(root) == []


def test_no_finding_when_the_transformer_declares_the_mask(model: Callable[..., Path]) -> None:
    masked = sales("select * from customers", "    mask: {crm.customers: [email]}\n")
    root = model({"teams/crm/crm.yaml": CRM, "teams/sales/sales.yaml": masked})
    assert findings(root) == []


def test_no_finding_in_the_same_zone(model: Callable[..., Path]) -> None:
    root = model({"teams/crm/crm.yaml": CRM, "teams/sales/sales.yaml": sales(
        "select id, email from customers").replace("zone: us", "zone: eu")})
    assert findings(root) == []


@pytest.mark.parametrize("sql", [
    "select * from customers",
    "select c.* from customers c",
    "select id from customers where email like '%@example.org'",  # a filter reads it too
    "with x as (select * from customers) select id from x",
    "select id from (select id, email as e from customers) t",
    "select id, (select max(email) from customers) as m from customers",
    # whatever cannot be resolved counts as every column
    "select customers from customers",  # DuckDB: a struct of the whole row
    "select to_json(c) as j from customers c",
    "select columns('e.*') from customers",
    "select id from customers; select email from customers",  # DuckDB runs both
    "select #2 from customers",  # DuckDB: the second column
    "unpivot customers on email, country into name k value v",
    "select id, v from customers unpivot (v for k in (email, country))",
    "summarize customers",  # min, max, ... of every column
    "select x.e from query('select email as e from customers') x",
    "select id, email from nowhere",
    "select ((( from customers",
])
def test_reads_that_count_as_reading_the_column(model: Callable[..., Path], sql: str) -> None:
    root = model({"teams/crm/crm.yaml": CRM, "teams/sales/sales.yaml": sales(f'"{sql}"')})
    found = findings(root)
    assert [(f[0], f[2]) for f in found] == [("policy-violation", 6)], found
    assert "'email'" in found[0][4]


@pytest.mark.parametrize("sql", ["select id, Email from customers",
                                 'select id, "EMAIL" from CUSTOMERS'])
def test_column_names_match_as_duckdb_matches_them(model: Callable[..., Path], sql: str) -> None:
    """DuckDB identifiers are case-insensitive, quoted or not: so is the check."""
    crm = CRM.replace("          email:", "          Email:")
    root = model({"teams/crm/crm.yaml": crm, "teams/sales/sales.yaml": sales(f"'{sql}'")})
    [(code, _, _, _, message)] = findings(root)
    assert code == "policy-violation" and "'Email'" in message


def test_sql_file_is_read_from_the_team_folder(model: Callable[..., Path]) -> None:
    text = SALES.replace("    sql: {sql}\n", "    sql_file: contacts.sql\n").format()
    leak = model({"teams/crm/crm.yaml": CRM, "teams/sales/sales.yaml": text,
                  "teams/sales/contacts.sql": "select id, email from customers\n"})
    assert [f[0] for f in findings(leak)] == ["policy-violation"]
    fine = model({"teams/sales/contacts.sql": "select id, country as email from customers\n"})
    assert findings(fine) == []


def test_a_python_transformer_reads_every_column(model: Callable[..., Path]) -> None:
    text = SALES.replace("    sql: {sql}\n", "    python: contacts:pick\n").format()
    root = model({"teams/crm/crm.yaml": CRM, "teams/sales/sales.yaml": text})
    [(code, _, line, _, message)] = findings(root)
    assert (code, line) == ("policy-violation", 6)
    assert "Python transformer gets every column" in message
    masked = text + "    mask: {crm.customers: [email]}\n"
    assert findings(model({"teams/sales/sales.yaml": masked})) == []


def test_pii_needs_a_zone_that_exports_it(model: Callable[..., Path]) -> None:
    public_pii = CRM.replace("classification: restricted, pii: true",
                             "classification: public, pii: true")
    root = model({"teams/crm/crm.yaml": public_pii,
                  "teams/sales/sales.yaml": sales("select id, email from customers")})
    [(code, _, _, _, message)] = findings(root)
    assert code == "policy-violation" and "pii" in message and "does not export pii" in message


def test_the_mask_must_name_an_input_and_its_columns(model: Callable[..., Path]) -> None:
    text = sales("select id, country as email from customers",
                 "    mask: {crm.customers: [emial], crm.orders: [id]}\n")
    root = model({"teams/crm/crm.yaml": CRM, "teams/sales/sales.yaml": text})
    found = sorted((f[0], f[4]) for f in findings(root))
    assert [code for code, _ in found] == ["unknown-reference", "unknown-reference"]
    messages = " | ".join(message for _, message in found)
    assert "'crm.orders' is not one of its inputs" in messages
    assert "unknown column 'emial'; did you mean 'email'" in messages


def test_a_transformer_of_a_team_the_owners_do_not_approve(model: Callable[..., Path]) -> None:
    approved_only = CRM.replace("primary_key: [id]",
                                "primary_key: [id]\n        allowed_consumers: []")
    root = model({"teams/crm/crm.yaml": approved_only, "teams/sales/sales.yaml": sales(
        "select id, country as email from customers")})
    [(code, file, line, _, message)] = findings(root)
    assert (code, file, line) == ("not-approved", "teams/sales/sales.yaml", 6)
    assert "transformer sales.contacts" in message and "allow only no other team" in message


def test_the_python_dsl_takes_the_mask_too(model: Callable[..., Path]) -> None:
    dsl = """\
from dataferry.model import Team

team = Team("sales", zone="us", owners=["sam@acme.example"])
team.transformer("contacts", inputs=["crm.customers"], sql="select id, email from customers",
                 columns={"id": "int64", "email": "string"},
                 mask={"crm.customers": ["email"]})
"""
    root = model({"teams/crm/crm.yaml": CRM, "teams/sales/model.py": dsl})
    assert findings(root) == []


CONSUMER = """\
team: sales
zone: us
owners: [sam@acme.example]
consumers:
  wh:
    sink: {kind: duckdb, path: wh.duckdb}
    datasets:
      - ref: crm.customers
        columns: [id, email]
        mask: [email]
        where: "email < 'm'"
"""


@pytest.mark.parametrize("need", [
    CONSUMER,
    CONSUMER.replace("        columns: [id, email]\n        mask: [email]\n",
                     "        columns: [id]\n"),
])
def test_a_consumer_filter_on_a_column_it_may_get_only_masked(
        model: Callable[..., Path], need: str) -> None:
    """The same hole for consumers: ``where`` runs on the raw values, so which rows arrive
    would reveal a masked (or left out) column, one comparison at a time."""
    root = model({"teams/crm/crm.yaml": CRM, "teams/sales/sales.yaml": need})
    [(code, file, line, _, message)] = findings(root)
    where_line = next(n for n, text in enumerate(need.splitlines(), 1) if "where:" in text)
    assert (code, file, line) == ("policy-violation", "teams/sales/sales.yaml", where_line)
    assert "filters crm.customers on column 'email'" in message
    fine = model({"teams/sales/sales.yaml": need.replace("email < 'm'", "id > 10")})
    assert findings(fine) == []


MARKETING = """\
team: marketing
zone: eu
owners: [erin@acme.example]
consumers:
  segments:
    sink: {{kind: sqlite, path: out.db}}
    datasets:
      - ref: crm.customers
        columns: [id, email, country]
        mask: [email]
{more}transformers:
  contacts:
    inputs: [crm.customers]
    sql: {sql}
    columns: {{id: int64, email: string}}
{mask}"""


def marketing(sql: str, *, more: str = "", mask: str = "") -> str:
    return MARKETING.format(sql=sql, more=more, mask=mask)


def test_a_column_the_teams_consumers_receive_only_masked_binds_its_transformers(
        model: Callable[..., Path]) -> None:
    """The demo's case: marketing (same zone as crm) receives email masked, and must not
    read it raw through a transformer either (its members would see it in the output)."""
    root = model({"teams/crm/crm.yaml": CRM,
                  "teams/marketing/m.yaml": marketing('"select id, email from customers"')})
    [(code, file, line, _, message)] = findings(root)
    assert (code, file) == ("policy-violation", "teams/marketing/m.yaml")
    assert "transformer marketing.contacts" in message and "'email'" in message
    assert "marketing.segments" in message and "only masked" in message
    assert "mask: {crm.customers: [email]}" in message


@pytest.mark.parametrize(("sql", "more", "mask"), [
    ('"select id, country from customers"', "", ""),  # does not read it
    ('"select id, email from customers"', "", "    mask: {crm.customers: [email]}\n"),
    # another consumer of the team receives it raw: the team may see it raw already
    ('"select id, email from customers"',
     "  mailing:\n    sink: {kind: sqlite, path: mail.db}\n    datasets:\n"
     "      - ref: crm.customers\n        table: recipients\n", ""),
])
def test_no_finding_when_the_team_may_see_the_column_raw_or_reads_it_masked(
        model: Callable[..., Path], sql: str, more: str, mask: str) -> None:
    root = model({"teams/crm/crm.yaml": CRM,
                  "teams/marketing/m.yaml": marketing(sql, more=more, mask=mask)})
    assert findings(root) == []
