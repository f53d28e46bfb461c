"""What ``ferry check`` says about common mistakes: the line a user reads, with the file,
line and column, the suggestion or the valid names, and what to do (issue 13, part 5)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataferry.model.yamlfile import YamlProblem, parse_yaml
from tests.conftest import Result
from tests.model.test_check_codes import CRM, SALES

Ferry = Callable[..., Result]
Model = Callable[..., Path]


def check(ferry: Ferry, root: Path) -> list[str]:
    """The finding lines ``ferry check`` prints."""
    result = ferry("check", "--model", root)
    return [line for line in result.out.splitlines() + result.err.splitlines()
            if re.match(r"\S+:\d+:\d+: ", line)]


def line_with(lines: list[str], fragment: str) -> str:
    found = [line for line in lines if fragment in line]
    assert len(found) == 1, lines
    return found[0]


def test_a_dsn_scheme_as_the_kind_suggests_the_kind(ferry: Ferry, model: Model) -> None:
    root = model({"teams/crm/crm.yaml": CRM.replace("kind: postgres", "kind: postgresql")})
    line = line_with(check(ferry, root), "kind")
    assert line.startswith("teams/crm/crm.yaml:6:5: error[invalid-field]: ")
    assert line.endswith("kind 'postgresql' is not one of postgres, mysql, sqlite, duckdb, "
                         "files, http, mqtt, nats; did you mean 'postgres'?")


def test_a_mode_lists_the_allowed_modes_once(ferry: Ferry, model: Model) -> None:
    root = model({"teams/crm/crm.yaml": CRM,
                  "teams/sales/sales.yaml": SALES.replace("mode: merge", "mode: upsert")})
    line = line_with(check(ferry, root), "mode")
    assert line.startswith("teams/sales/sales.yaml:9:15: error[invalid-field]: ")
    assert line.count("replace") == 1, line
    assert line.endswith("'upsert' is not one of replace, merge, append, history; did you "
                         "mean 'merge'?")


def test_an_unknown_mode_far_from_any_lists_them_once(ferry: Ferry, model: Model) -> None:
    root = model({"teams/crm/crm.yaml": CRM,
                  "teams/sales/sales.yaml": SALES.replace("mode: merge", "mode: zzz")})
    line = line_with(check(ferry, root), "mode")
    assert line.endswith("'zzz' is not one of replace, merge, append, history")


def test_an_unknown_zone_lists_the_zones(ferry: Ferry, model: Model) -> None:
    root = model({"teams/crm/crm.yaml": CRM.replace("zone: eu", "zone: mars")})
    line = line_with(check(ferry, root), "unknown zone")
    assert line == ("teams/crm/crm.yaml:2:7: error[unknown-reference]: team crm: unknown zone "
                    "'mars'; the zones are: eu, us")


def test_a_close_zone_is_suggested_not_listed(ferry: Ferry, model: Model) -> None:
    root = model({"teams/crm/crm.yaml": CRM.replace("zone: eu", "zone: euu")})
    line = line_with(check(ferry, root), "unknown zone")
    assert line.endswith("unknown zone 'euu'; did you mean 'eu'?")


def test_an_unknown_column_lists_the_columns(ferry: Ferry, model: Model) -> None:
    root = model({"teams/crm/crm.yaml": CRM.replace("not_null: [id]", "not_null: [zzzz]")})
    line = line_with(check(ferry, root), "unknown column")
    assert line == ("teams/crm/crm.yaml:21:24: error[unknown-reference]: crm.customers not_null "
                    "check: unknown column 'zzzz'; its columns are: id, email, country, "
                    "updated_at")


def test_an_unknown_dataset_lists_its_teams_datasets(ferry: Ferry, model: Model) -> None:
    """``sales.clients`` is not close to ``sales.orders``: sharing ``sales.`` is no match."""
    sales = SALES + """\
sources:
  db:
    kind: sqlite
    path: shop.db
    datasets:
      orders: {table: orders, columns: {id: int64}}
      invoices: {table: invoices, columns: {id: int64}}
"""
    root = model({"teams/crm/crm.yaml": CRM,
                  "teams/sales/sales.yaml": sales.replace("ref: crm.customers",
                                                          "ref: sales.clients")})
    line = line_with(check(ferry, root), "unknown dataset")
    assert line == ("teams/sales/sales.yaml:8:14: error[unknown-reference]: unknown dataset "
                    "'sales.clients'; the datasets of team sales are: sales.invoices, "
                    "sales.orders")


def test_an_unknown_dataset_close_to_one_is_suggested(ferry: Ferry, model: Model) -> None:
    root = model({"teams/crm/crm.yaml": CRM,
                  "teams/sales/sales.yaml": SALES.replace("crm.customers", "crm.customer")})
    line = line_with(check(ferry, root), "unknown dataset")
    assert line.endswith("unknown dataset 'crm.customer'; did you mean 'crm.customers'?")


def test_an_invalid_team_name_suggests_a_valid_one(ferry: Ferry, model: Model) -> None:
    team = "team: Marketing\nzone: eu\nowners: [m@acme.example]\n"
    root = model({"teams/marketing/team.yaml": team})
    lines = check(ferry, root)
    assert lines == ["teams/marketing/team.yaml:1:7: error[invalid-field]: team Marketing: "
                     "'Marketing' is not a valid name (lower case letters, digits and _, "
                     "starting with a letter); name it 'marketing', in teams/marketing/"]
    assert "teams/Marketing/" not in "\n".join(lines)


def test_a_misplaced_invalid_team_is_sent_to_a_valid_folder(ferry: Ferry, model: Model) -> None:
    root = model({"other/x.yaml": "team: DataScience\nzone: eu\nowners: [m@acme.example]\n"})
    line = line_with(check(ferry, root), "misplaced-definition")
    assert line.endswith("a team's files must be under teams/data_science/ (so ownership can "
                         "be checked per path); name the team 'data_science'")
    assert "teams/DataScience/" not in line


def test_a_column_indented_one_level_too_little(ferry: Ferry, model: Model) -> None:
    dedented = CRM.replace("          updated_at: {type: timestamp_tz, nullable: false}\n",
                           "          updated_at: {type: timestamp_tz, nullable: false}\n"
                           "        is_vip: {type: bool}\n")
    line = line_with(check(ferry, model({"teams/crm/crm.yaml": dedented})), "is_vip")
    assert line == ("teams/crm/crm.yaml:20:9: error[invalid-field]: team crm: "
                    "sources.crmdb.datasets.customers: unknown key 'is_vip'; it looks like a "
                    "column of dataset customers: is it indented one level too little? (put it "
                    "under columns:)")


def test_a_dataset_key_indented_too_much(ferry: Ferry, model: Model) -> None:
    deeper = CRM.replace("        cursor: updated_at\n", "").replace(
        "          updated_at: {type: timestamp_tz, nullable: false}\n",
        "          updated_at:\n            type: timestamp_tz\n            cursor: updated_at\n")
    line = line_with(check(ferry, model({"teams/crm/crm.yaml": deeper})), "'cursor'")
    assert line == ("teams/crm/crm.yaml:20:13: error[invalid-field]: team crm: "
                    "sources.crmdb.datasets.customers.columns.updated_at: unknown key 'cursor'; "
                    "it is a key of dataset customers: is it indented too much?")


def test_a_dataset_section_indented_into_the_columns(ferry: Ferry, model: Model) -> None:
    deeper = CRM.replace("        checks:\n", "          checks:\n")
    line = line_with(check(ferry, model({"teams/crm/crm.yaml": deeper})), "checks")
    assert line.startswith("teams/crm/crm.yaml:21:11: error[invalid-field]: team crm: "
                           "sources.crmdb.datasets.customers.columns.checks: ")
    assert line.endswith("; it is a key of dataset customers: is it indented too much?")


def test_a_sink_key_written_at_the_consumers_level(ferry: Ferry, model: Model) -> None:
    sales = SALES.replace("    sink: {kind: duckdb, path: wh.duckdb}\n",
                          "    sink: {kind: duckdb}\n    path: wh.duckdb\n")
    line = line_with(check(ferry, model({"teams/crm/crm.yaml": CRM,
                                         "teams/sales/sales.yaml": sales})),
                     "unknown key 'path'")
    assert line == ("teams/sales/sales.yaml:7:5: error[invalid-field]: team sales: "
                    "consumers.warehouse: unknown key 'path'; it is a key of sink of consumer "
                    "warehouse: is it indented one level too little?")


def test_a_dataset_key_written_among_the_datasets(ferry: Ferry, model: Model) -> None:
    dedented = CRM.replace("        primary_key: [id]\n", "") + "      primary_key: [id]\n"
    line = line_with(check(ferry, model({"teams/crm/crm.yaml": dedented})), "a mapping")
    assert line == ("teams/crm/crm.yaml:22:20: error[invalid-field]: team crm: "
                    "sources.crmdb.datasets.primary_key: not a dataset (that is a mapping); it "
                    "is a key of each dataset of source crmdb: is it indented one level too "
                    "little?")


def test_a_sink_kind_and_a_missing_kind(ferry: Ferry, model: Model) -> None:
    root = model({"teams/crm/crm.yaml": CRM.replace("    kind: postgres\n", ""),
                  "teams/sales/sales.yaml": SALES.replace("kind: duckdb", "kind: mariadb")})
    lines = check(ferry, root)
    assert line_with(lines, "'kind'").endswith(
        "sources.crmdb: missing key 'kind' (one of: postgres, mysql, sqlite, duckdb, files, "
        "http, mqtt, nats)")
    assert line_with(lines, "mariadb").endswith(
        "consumers.warehouse.sink: kind 'mariadb' is not one of postgres, mysql, sqlite, "
        "duckdb, parquet, share; did you mean 'mysql'?")


def test_an_unknown_key_far_from_any_lists_the_keys(ferry: Ferry, model: Model) -> None:
    root = model({"teams/crm/crm.yaml": CRM.replace("team: crm\n", "team: crm\nfoo: 1\n")})
    line = line_with(check(ferry, root), "'foo'")
    assert line.startswith("teams/crm/crm.yaml:2:1: error[invalid-field]: team crm: unknown key "
                           "'foo'; expected one of: team, zone, owners")


def test_a_finding_in_a_teams_second_file_points_into_it(ferry: Ferry, model: Model) -> None:
    root = model({"teams/crm/crm.yaml": CRM,
                  "teams/crm/more.yaml": "team: crm\n\nfoo: 1\n"})
    line = line_with(check(ferry, root), "'foo'")
    assert line.startswith("teams/crm/more.yaml:3:1: ")


# --- YAML syntax, in plain words -------------------------------------------------------

@pytest.mark.parametrize(("text", "where", "words"), [
    ("team: crm\ndescription: Sales: the orders\n", (2, 19),
     "a ': ' inside a value makes it look like a key: quote the value (description: "
     "\"Sales: the orders\")"),
    ("team: crm\nzone: eu\n  owners: [a]\n", (3, 9),
     "this line is indented more than 'zone' on line 2, which already has a value"),
    ("team: crm\nsources:\n  db:\n    kind: x\n   datasets: {}\n", (5, 4),
     "this line is indented 3 spaces: less than line 4 (4) and more than line 3 (2)"),
    ("team: crm\nzone\nowners: [a]\n", (3, 1),
     "line 2 ('zone') is not a 'key: value' pair: add ': ' after the key"),
    ("team: crm\nschedule: */15 * * * *\n", (2, 12),
     "a value starting with '*' is read as a YAML alias: quote it (schedule: \"*/15 * * * *\")"),
    ("team: crm\nowners: @bob\n", (2, 9), "a value cannot start with '@' in YAML: quote it"),
    ("team: 'crm\nzone: eu\n", (3, 1), "the quote opened on line 1 is never closed"),
    ("team: crm\nowners: [a, b\nzone: eu\n", (3, 5), "the '[' opened on line 2 is not closed"),
    ("team: crm\nzone: eu\n- a\n", (3, 1), "a list item ('- ...') where a key was expected"),
    ("team: crm\nowners:\n  - a\n  zone: eu\n", (4, 3),
     "this line is in a list but is no list item"),
    ("team: crm\npath: \"C:\\data\"\n", (2, 10),
     "a backslash inside double quotes starts an escape"),
    ("team: 'crm' x\n", (1, 13), "text after the closing quote: quote the whole value"),
])
def test_yaml_errors_are_said_in_plain_words(ferry: Ferry, model: Model, text: str,
                                             where: tuple[int, int], words: str) -> None:
    [line] = check(ferry, model({"teams/crm/crm.yaml": text}))
    assert line.startswith(f"teams/crm/crm.yaml:{where[0]}:{where[1]}: error[parse-error]: "
                           f"invalid YAML: {words}"), line
    assert line.endswith(")") and "(libyaml: " in line  # libyaml's words stay, at the end


def test_the_libyaml_words_are_not_the_message(ferry: Ferry, model: Model) -> None:
    [line] = check(ferry, model({"teams/crm/crm.yaml": "team: crm\ndescription: a: b\n"}))
    message = line.split("invalid YAML: ", 1)[1]
    assert not message.startswith("mapping values are not allowed")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=" :-'\"{}[],*&@|>#\\\tab\n", max_size=12), max_size=8))
def test_any_broken_yaml_is_explained_without_failing(lines: list[str]) -> None:
    try:
        parse_yaml("\n".join(lines))
    except YamlProblem as problem:
        assert problem.message and not problem.message.startswith("invalid YAML: (")


def test_a_duckdb_storage_version_says_what_it_takes(ferry: Ferry, model: Model) -> None:
    sales = SALES.replace("sink: {kind: duckdb, path: wh.duckdb}",
                          "sink: {kind: duckdb, path: wh.duckdb, storage_version: '1.0'}")
    root = model({"teams/crm/crm.yaml": CRM, "teams/sales/sales.yaml": sales})
    line = line_with(check(ferry, root), "storage_version")
    assert line.endswith("storage_version: '1.0' is not a DuckDB release as vX.Y.Z "
                         "(e.g. v1.1.0), or latest")
