"""Fuzzing ``ferry check``: whatever is in the model files, it reports findings, never raises.

Random YAML documents, random text and bytes, and random edits of valid models (generated
by the round-trip strategy) are written as model files; every finding must have a known
code, point into a file of the model, and say something. Special inputs (huge files,
alias bombs, deep nesting, hostile Python DSL files) are tested one by one.
"""

from __future__ import annotations

import json
import re
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataferry.model.check import CheckResult, check_model
from dataferry.model.export import export_files
from dataferry.model.findings import CODES
from dataferry.model.spec import Ecosystem
from tests.model.test_roundtrip import AWKWARD, ecosystems

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ECOSYSTEM = """\
ecosystem: acme
description: "Acme: data # ecosystem"
zones:
  eu: {export_classifications: [public, internal], platforms: [local, hq]}
  us: {export_classifications: [public, internal, confidential], export_pii: true}
platforms:
  local: {engine: duckdb}
  spark: {engine: spark, master: "local[2]", min_rows: 50000000}
  hq: {engine: duckdb, network: hq-lan}
defaults: {platform: local, freshness: 1d}
admins: [platform-team@acme.example]
"""

CRM = """\
team: crm
zone: eu
owners: [alice@acme.example]
description: Customer relationship domain
sources:
  crmdb:
    kind: postgres
    dsn: postgresql://crm_reader@db.internal:5432/crm
    password: ${env:CRM_DB_PASSWORD}
    network: hq-lan
    datasets:
      customers:
        table: public.customers
        description: One row per customer
        capture: incremental
        cursor: updated_at
        primary_key: [id]
        classification: internal
        status: production
        deprecated: "use crm.customers_v2"
        allowed_consumers: [sales]
        schedule: "*/15 * * * *"
        columns:
          id:         {type: int64, nullable: false}
          email:      {type: string, classification: restricted, pii: true}
          country:    {type: string(2)}
          balance:    {type: decimal(12,2)}
          tags:       {type: list<string>}
          attrs:      {type: "map<string,int64>"}
          updated_at: {type: timestamp_tz, nullable: false}
        checks:
          - not_null: [id, updated_at]
          - unique: [id]
          - accepted_values: {column: country, values: [NZ, AU, DE, FR, US]}
          - range: {column: balance, min: 0}
          - row_count: {min: 1}
          - freshness: {column: updated_at, max_age: 1h}
  api:
    kind: http
    url: https://api.example/v1
    headers: {Authorization: "${env:API_TOKEN}", Accept: application/json}
    datasets:
      events:
        endpoint: /events
        records: data.items
        pagination: {next_link: links.next, size: 100}
        columns: {id: int64, at: timestamp}
  sensors:
    kind: files
    path: /data/sensors/*.csv
    datasets:
      readings:
        capture: incremental
        columns: {sensor: string, value: float64}
transformers:
  customer_revenue:
    inputs: [crm.customers, crm.readings]
    sql: |
      select c.id, c.country, cast(sum(r.value) as decimal(18,2)) as revenue
      from customers c join readings r on true
      group by 1, 2
    primary_key: [id]
    columns: {id: {type: int64}, country: {type: string(2)}, revenue: {type: decimal(18,2)}}
    trigger: on_change
"""

SALES = """\
team: sales
zone: us
owners: [sam@acme.example]
consumers:
  warehouse:
    sink: &warehouse
      kind: postgres
      dsn: postgresql://loader@wh.internal:5432/wh
      password: ${env:WH_PASSWORD}
      schema: sales
    datasets:
      - ref: crm.customers
        <<: {mode: merge, freshness: 1h}
        columns: [id, email, country, updated_at]
        where: "country <> 'NZ'"
        table: customers
        mask: [email]
      - {ref: crm.customer_revenue, mode: append}
    notify:
      - webhook: https://hooks.internal/sales
        secret: ${env:SALES_HOOK_SECRET}
      - nats: sales.datasets
  archive:
    sink: *warehouse
    datasets: [{ref: crm.customer_revenue, table: revenue_archive}]
"""

BASE = {"ferry.yaml": ECOSYSTEM, "teams/crm/crm.yaml": CRM, "teams/sales/sales.yaml": SALES}


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def checked(root: Path) -> CheckResult:
    """``check_model(root)``, asserting what every result must satisfy."""
    result = check_model(root)
    for finding in result.findings:
        assert finding.code in CODES, finding
        assert finding.severity in ("error", "warning"), finding
        path = root / finding.file
        assert path.is_file(), finding
        assert finding.line >= 0 and finding.column >= 0, finding
        assert finding.message.strip(), finding
        lines = len(re.split(rb"\r\n|\r|\n", path.read_bytes()))  # as editors count them
        assert finding.line <= lines + 1, finding
    if result.ok:
        assert result.loaded.ecosystem is not None
    return result


def check_files(files: dict[str, str | bytes]) -> CheckResult:
    with tempfile.TemporaryDirectory() as tmp:
        return checked(write(Path(tmp), files))


def test_the_base_model_loads() -> None:
    result = check_files(BASE)
    assert [(f.code, f.file, f.line) for f in result.findings] == [
        ("deprecated-dataset", "teams/crm/crm.yaml", 57),
        ("deprecated-dataset", "teams/sales/sales.yaml", 12),
    ]


# --- random documents ----------------------------------------------------------------------

MODEL_KEYS = [
    "ecosystem", "team", "teams", "zone", "zones", "owners", "platforms", "platform", "defaults",
    "admins", "sources", "transformers", "consumers", "kind", "dsn", "password", "datasets",
    "columns", "type", "nullable", "checks", "not_null", "unique", "range", "row_count",
    "accepted_values", "values", "freshness", "column", "min", "max", "primary_key", "capture",
    "cursor", "sink", "ref", "mode", "mask", "inputs", "sql", "sql_file", "python", "notify",
    "webhook", "secret", "nats", "classification", "pii", "network", "engine", "home", "store",
    "path", "format", "url", "headers", "token", "pagination", "trigger", "schedule",
    "deprecated", "allowed_consumers", "version", "where", "table", "query", "description",
    "export_classifications", "export_pii", "<<",
]
VALUES = [
    "postgres", "mysql", "sqlite", "duckdb", "files", "http", "parquet", "int64",
    "decimal(12,2)", "list<string>", "struct<a:int64, b:map<string,json>>", "strnig",
    "crm.customers", "crm", "eu", "us", "local", "spark", "merge", "history", "incremental",
    "cdc", "${env:X}", "plain-secret", "*/5 * * * *", "on_change", "1h", "0s", "restricted",
    "a@b.example", "x.y.z", "Bad Name",
]
keys = st.one_of(
    st.sampled_from(MODEL_KEYS), st.text(max_size=8), st.integers(), st.booleans(), st.none(),
    st.floats(),
)
leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
    st.sampled_from(VALUES), st.sampled_from(AWKWARD),
)
documents = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=6),
    max_leaves=40,
)


def dump(document: Any, flow: bool | None) -> str:
    return yaml.safe_dump(document, default_flow_style=flow, allow_unicode=True, sort_keys=False)


yaml_texts = st.builds(dump, documents, st.sampled_from([True, False, None]))
team_like = st.builds(
    lambda team, zone, owners, rest, flow: dump(
        {"team": team, "zone": zone, "owners": owners, **rest}, flow
    ),
    st.one_of(st.just("x"), leaves), st.one_of(st.sampled_from(["eu", "us"]), leaves),
    st.one_of(st.just(["x@acme.example"]), documents),
    st.dictionaries(st.sampled_from(MODEL_KEYS), documents, max_size=4),
    st.sampled_from([True, False, None]),
)
ecosystem_like = st.builds(
    lambda name, zones, rest, flow: dump({"ecosystem": name, "zones": zones, **rest}, flow),
    st.one_of(st.just("acme"), leaves), st.one_of(st.just({"eu": {}, "us": {}}), documents),
    st.dictionaries(st.sampled_from(MODEL_KEYS), documents, max_size=4),
    st.sampled_from([True, False, None]),
)
yaml_soup = st.text(alphabet=" :-[]{}#&*!|>'\"%@`,?\n\tabcxy019.<", max_size=200)
contents: st.SearchStrategy[str | bytes] = st.one_of(
    yaml_texts, team_like, ecosystem_like, yaml_soup, st.text(max_size=200), st.binary(max_size=200)
)


@SETTINGS
@given(contents)
def test_random_ferry_yaml(content: str | bytes) -> None:
    check_files({**BASE, "ferry.yaml": content})


@SETTINGS
@given(contents, st.sampled_from(["teams/x/x.yaml", "teams/crm/crm.yaml", "other.yaml"]))
def test_random_team_file(content: str | bytes, path: str) -> None:
    check_files({**BASE, path: content})


# --- mutations of valid models -------------------------------------------------------------

KEY_LINE = re.compile(r"^(\s*(?:- )?)([^\s#:][^:]*?):(?:\s|$)")
INVALID_NAMES = ["Bad Name", "1abc", "a.b", "x" * 70, "ü", "-x", "a b", "''", "A", "_x", "a/b"]
NEW_VALUES = [
    "[1, 2]", "{a: 1}", "42", "'str'", "null", "", "~", "-1.5e3", "[]", "{}", "true", "*nope",
    "!!binary aGk=", "!custom x", "!!int x", "|", ">", "[", "{", "'", '"', "&a", "- x", "? x",
    "0o17", ".inf", "a: b: c", "${env:X", "{x: decimal(1,2), y: list<a, b>}",
]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" -"))


def _key_lines(lines: list[str]) -> list[int]:
    return [i for i, line in enumerate(lines) if KEY_LINE.match(line)]


def mutate(text: str, draw: Callable[[st.SearchStrategy[Any]], Any]) -> str:
    """One random edit of a YAML text."""
    lines = text.split("\n")
    keyed = _key_lines(lines)
    op = draw(st.sampled_from([
        "delete_key", "rename_key", "retype", "duplicate", "delete", "tab", "truncate",
        "anchor", "swap", "bad_name",
    ]))
    if op in ("delete_key", "rename_key", "retype", "anchor") and not keyed:
        op = "duplicate"
    index = draw(st.integers(0, len(lines) - 1))
    if op == "delete_key":
        at = draw(st.sampled_from(keyed))
        end = at + 1
        while end < len(lines) and lines[end].strip() and _indent(lines[end]) > _indent(lines[at]):
            end += 1
        del lines[at:end]
    elif op == "rename_key":
        at = draw(st.sampled_from(keyed))
        match = KEY_LINE.match(lines[at])
        assert match is not None
        key = match.group(2)
        new = draw(st.sampled_from([key + "s", key[:-1], key.upper(), "unknown", "'q k'", "1",
                                    "null", "<<", "? x", key + key]))
        lines[at] = match.group(1) + new + lines[at][match.end(2):]
    elif op == "retype":
        at = draw(st.sampled_from(keyed))
        match = KEY_LINE.match(lines[at])
        assert match is not None
        lines[at] = lines[at][: match.end(2)] + ": " + draw(st.sampled_from(NEW_VALUES))
    elif op == "duplicate":
        lines.insert(index, lines[index])
    elif op == "delete":
        del lines[index]
    elif op == "tab":
        line = lines[index]
        where = draw(st.integers(0, len(line)))
        lines[index] = line[:where] + "\t" + line[where:]
    elif op == "truncate":
        return text[: draw(st.integers(0, len(text)))]
    elif op == "anchor":
        at, other = draw(st.sampled_from(keyed)), draw(st.sampled_from(keyed))
        first = KEY_LINE.match(lines[at])
        assert first is not None
        lines[at] = lines[at][: first.end(2)] + ": &a" + lines[at][first.end(2) + 1 :]
        second = KEY_LINE.match(lines[other])
        assert second is not None
        kind = draw(st.sampled_from(["alias", "merge", "unknown", "recursive"]))
        if kind == "alias":
            lines[other] = lines[other][: second.end(2)] + ": *a"
        elif kind == "merge":
            lines.insert(other + 1, " " * _indent(lines[other]) + "<<: *a")
        elif kind == "unknown":
            lines[other] = lines[other][: second.end(2)] + ": *b"
        else:
            lines.insert(at + 1, " " * (_indent(lines[at]) + 2) + "loop: *a")
    elif op == "swap":
        other = draw(st.integers(0, len(lines) - 1))
        lines[index], lines[other] = lines[other], lines[index]
    else:  # replace a name (team, zone, dataset, column, ...) with an invalid one
        words = sorted(set(re.findall(r"\b[a-z][a-z0-9_]*\b", text)))
        if words:
            word = draw(st.sampled_from(words))
            bad = draw(st.sampled_from(INVALID_NAMES))
            count = draw(st.sampled_from([1, 0]))
            return re.sub(rf"\b{re.escape(word)}\b", bad, text, count=count)
    return "\n".join(lines)


def mutated(files: dict[str, str], data: st.DataObject) -> dict[str, str | bytes]:
    """1-3 edits; sometimes a team file is also copied (a team split over two files)."""
    out: dict[str, str | bytes] = dict(files)
    team_files = sorted(f for f in files if f.startswith("teams/"))
    if team_files and data.draw(st.booleans()):
        copy = data.draw(st.sampled_from(team_files))
        out[copy.replace(".yaml", "_2.yaml")] = files[copy]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(sorted(out)))
        text = out[path]
        assert isinstance(text, str)
        out[path] = mutate(text, data.draw)
    return out


@SETTINGS
@given(st.data())
def test_mutated_base_model(data: st.DataObject) -> None:
    check_files(mutated(BASE, data))


@settings(SETTINGS, max_examples=80)
@given(ecosystems(), st.data())
def test_mutated_generated_model(eco: Ecosystem, data: st.DataObject) -> None:
    check_files(mutated(export_files(eco), data))


def _replace_somewhere(value: Any, data: st.DataObject) -> Any:
    """``value`` with one random subtree replaced, deleted, renamed or extended."""
    if isinstance(value, dict) and value and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(list(value)))
        op = data.draw(st.sampled_from(["down", "replace", "delete", "rename", "add"]))
        out = dict(value)
        if op == "down":
            out[key] = _replace_somewhere(value[key], data)
        elif op == "replace":
            out[key] = data.draw(documents)
        elif op == "delete":
            del out[key]
        elif op == "rename":
            out[data.draw(keys)] = out.pop(key)
        else:
            out[data.draw(keys)] = data.draw(documents)
        return out
    if isinstance(value, list) and value and data.draw(st.booleans()):
        index = data.draw(st.integers(0, len(value) - 1))
        out_list = list(value)
        out_list[index] = _replace_somewhere(value[index], data)
        return out_list
    return data.draw(documents)


@SETTINGS
@given(st.data())
def test_mutated_base_model_data(data: st.DataObject) -> None:
    """Edits of the parsed documents (type changes deep inside), dumped back as YAML."""
    path = data.draw(st.sampled_from(sorted(BASE)))
    document = yaml.safe_load(BASE[path])
    check_files({**BASE, path: dump(_replace_somewhere(document, data), None)})


PLACES = [
    ("teams/sales/sales.yaml", ("consumers", "warehouse", "notify", 0)),
    ("teams/sales/sales.yaml", ("consumers", "warehouse", "notify")),
    ("teams/sales/sales.yaml", ("consumers", "warehouse", "sink")),
    ("teams/sales/sales.yaml", ("consumers", "warehouse", "datasets", 0)),
    ("teams/sales/sales.yaml", ("consumers", "warehouse", "datasets", 0, "mask")),
    ("teams/sales/sales.yaml", ("consumers", "warehouse", "datasets", 0, "where")),
    ("teams/crm/crm.yaml", ("sources", "crmdb")),
    ("teams/crm/crm.yaml", ("sources", "crmdb", "datasets", "customers", "checks", 0)),
    ("teams/crm/crm.yaml", ("sources", "crmdb", "datasets", "customers", "checks", 3, "range")),
    ("teams/crm/crm.yaml", ("sources", "crmdb", "datasets", "customers", "columns", "id")),
    ("teams/crm/crm.yaml", ("sources", "api", "datasets", "events", "pagination")),
    ("teams/crm/crm.yaml", ("sources", "api", "headers")),
    ("teams/crm/crm.yaml", ("transformers", "customer_revenue", "inputs", 0)),
    ("teams/crm/crm.yaml", ("team",)),
    ("teams/crm/crm.yaml", ("owners",)),
    ("ferry.yaml", ("zones", "eu")),
    ("ferry.yaml", ("platforms", "hq", "network")),
    ("ferry.yaml", ("defaults",)),
    ("ferry.yaml", ("ecosystem",)),
]
ODD_VALUES = ["x", 1, 1.5, True, None, [], {}, ["x"], [None], [[]], {"x": 1}, {1: 2}, "{x}",
              "${env:X}", "a.b.c", "x" * 300]


@pytest.mark.parametrize(("path", "where"), PLACES, ids=lambda p: "/".join(map(str, p)))
def test_odd_values_in_every_place(path: str, where: tuple[str | int, ...]) -> None:
    for value in ODD_VALUES:
        document = yaml.safe_load(BASE[path])
        node = document
        for step in where[:-1]:
            node = node[step]
        node[where[-1]] = value
        check_files({**BASE, path: dump(document, None)})


@pytest.mark.parametrize(
    "where",
    ["'unclosed", '"unclosed', "/* open", "$$x", "", ";", "country <> 'NZ'; drop table t",
     "select 1", "drop table customers", "country = any(", "country >"],
)
def test_a_where_that_is_not_a_condition_is_invalid(where: str) -> None:
    sales = SALES.replace("where: \"country <> 'NZ'\"", f"where: {json.dumps(where)}")
    result = check_files({**BASE, "teams/sales/sales.yaml": sales})
    [finding] = [f for f in result.findings if f.code == "invalid-field"]
    assert (finding.file, finding.line) == ("teams/sales/sales.yaml", 15)
    assert "where is not a SQL expression" in finding.message


# --- special files -------------------------------------------------------------------------


def codes(result: CheckResult) -> list[tuple[str, str]]:
    return [(f.code, f.file) for f in result.findings]


@pytest.mark.parametrize("content", ["", "\n\n", "# only a comment\n# and another\n", "---\n",
                                     "--- # doc\n...\n", "\ufeff"])
def test_empty_team_files_are_warnings(content: str) -> None:
    result = check_files({**BASE, "teams/x/x.yaml": content})
    assert [(f.code, f.severity) for f in result.findings if f.file == "teams/x/x.yaml"] == [
        ("invalid-field", "warning")]


@pytest.mark.parametrize("content", ["", "# only a comment\n"])
def test_an_empty_team_file_hides_no_broken_reference(content: str) -> None:
    sales = SALES.replace("ref: crm.customers\n", "ref: crm.custmers\n")
    result = check_files({**BASE, "teams/crm/notes.yaml": content, "teams/sales/sales.yaml": sales})
    assert ("unknown-reference", "teams/sales/sales.yaml") in codes(result)


@pytest.mark.parametrize("content", ["", "# only a comment\n"])
def test_an_empty_ferry_yaml_is_an_error(content: str) -> None:
    result = check_files({**BASE, "ferry.yaml": content})
    assert not result.ok
    assert ("invalid-field", "ferry.yaml") in codes(result)


def test_duplicate_keys() -> None:
    text = CRM.replace("zone: eu\n", "zone: eu\nzone: us\n")
    result = check_files({**BASE, "teams/crm/crm.yaml": text})
    [dup] = [f for f in result.findings if f.code == "duplicate-name"]
    assert (dup.file, dup.line) == ("teams/crm/crm.yaml", 3)
    assert result.loaded.ecosystem is not None
    assert result.loaded.ecosystem.teams["crm"].zone == "eu"  # the first one wins


def test_tabs() -> None:
    text = CRM.replace("  crmdb:\n", "\tcrmdb:\n")
    result = check_files({**BASE, "teams/crm/crm.yaml": text})
    [error] = [f for f in result.findings if f.code == "parse-error"]
    assert error.file == "teams/crm/crm.yaml" and error.line == 6
    assert "tabs" in error.message


def test_positions_ignore_unusual_line_breaks() -> None:
    """libyaml ends lines at NEL/LS/PS too; findings use the lines editors show."""
    text = CRM.replace("Customer relationship", "Kunden\x85 \u2028 \u2029").replace(
        "zone: eu", "zone: eu\r").replace("kind: postgres", "kind: postgress")
    result = check_files({**BASE, "teams/crm/crm.yaml": text})
    [error] = [f for f in result.findings if f.code == "invalid-field"]
    assert (error.file, error.line, error.column) == ("teams/crm/crm.yaml", 7, 5)


def test_non_utf8_bytes() -> None:
    data = CRM.replace("Customer relationship", "Kunden\xe4").encode("latin-1")
    result = check_files({**BASE, "teams/crm/crm.yaml": data})
    [error] = [f for f in result.findings if f.code == "parse-error"]
    assert (error.file, error.line) == ("teams/crm/crm.yaml", 4)
    assert "UTF-8" in error.message


@pytest.mark.parametrize("path", ["ferry.yaml", "teams/crm/crm.yaml"])
def test_a_huge_file_is_refused_quickly(path: str) -> None:
    body = BASE[path] + "# " + "x" * 78 + "\n"
    data = (body * (70 * 2**20 // len(body) + 1)).encode()
    assert len(data) >= 70 * 2**20
    # CPU seconds, not wall: the bound is for work that grows out of hand, and a busy CI
    # machine stretched the wall time of a 2 s check past it.
    started = time.process_time()
    result = check_files({**BASE, path: data})
    assert time.process_time() - started < 10
    assert ("parse-error", path) in codes(result)
    assert not result.ok


BILLION_LAUGHS = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


@pytest.mark.parametrize("path", ["ferry.yaml", "teams/crm/crm.yaml"])
@pytest.mark.parametrize("prefix", ["", "team: crm\n", "ecosystem: acme\n"])
def test_an_alias_bomb_is_refused_quickly(path: str, prefix: str) -> None:
    started = time.process_time()
    result = check_files({**BASE, path: prefix + BILLION_LAUGHS})
    assert time.process_time() - started < 5
    [error] = [f for f in result.findings if f.code == "parse-error"]
    assert error.file == path and "alias" in error.message


def test_a_few_aliases_are_fine() -> None:
    text = CRM.replace("  sensors:\n", "  sensors: &files\n").replace(
        "transformers:", "  more: *files\ntransformers:")
    result = check_files({**BASE, "teams/crm/crm.yaml": text})
    assert "parse-error" not in {f.code for f in result.findings}


@pytest.mark.parametrize("setting", ["home", "store"])
@pytest.mark.parametrize("value", ['"a\\0b"', "teams", "teams/crm", ".", "teams/crm/store"])
def test_home_and_store_never_hide_teams(setting: str, value: str) -> None:
    result = check_files({**BASE, "ferry.yaml": f"{ECOSYSTEM}{setting}: {value}\n"})
    assert result.ok and result.loaded.ecosystem is not None
    assert sorted(result.loaded.ecosystem.teams) == ["crm", "sales"]


@pytest.mark.parametrize("path", ["ferry.yaml", "teams/crm/crm.yaml"])
def test_a_list_at_the_root(path: str) -> None:
    result = check_files({**BASE, path: "- team: crm\n- zone: eu\n"})
    assert ("invalid-field", path) in codes(result)
    assert not result.ok


@pytest.mark.parametrize("path", ["ferry.yaml", "teams/crm/crm.yaml"])
@pytest.mark.parametrize(
    "content",
    [
        "[" * 10_000,
        "[" * 10_000 + "]" * 10_000,
        "{a: " * 10_000 + "1" + "}" * 10_000,
        "".join("  " * i + "- \n" for i in range(3_000)),
    ],
    ids=["open", "closed", "mappings", "block"],
)
def test_deep_nesting(path: str, content: str) -> None:
    started = time.process_time()
    result = check_files({**BASE, path: content})
    assert time.process_time() - started < 10
    assert not result.ok
    assert {f.code for f in result.findings if f.file == path} <= {"parse-error", "invalid-field"}


@pytest.mark.parametrize("depth", [50, 300, 900, 5_000])
@pytest.mark.parametrize("key", ["description", "columns", "sources"])
def test_deep_values_inside_a_team(depth: int, key: str) -> None:
    value = "[" * depth + "]" * depth
    text = f"team: x\nzone: eu\nowners: [x@acme.example]\n{key}: {value}\n"
    result = check_files({**BASE, "teams/x/x.yaml": text})
    assert not result.ok


def test_recursive_aliases() -> None:
    for text in ("team: x\nsources: &a {s: *a}\n", "team: x\nsources: &a [*a]\n",
                 "team: x\nsources: &a {<<: *a}\n"):
        result = check_files({**BASE, "teams/x/x.yaml": text})
        assert not result.ok


# --- hostile Python DSL files --------------------------------------------------------------

DSL = """\
from dataferry.model import Column, Team

team = Team("x", zone="eu", owners=["x@acme.example"])
db = team.source("db", kind="sqlite", path="x.db")
db.dataset("t", table="t", columns=[Column("id", "int64")])
"""


def test_dsl_endless_loop_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_DSL_TIMEOUT", "2")
    started = time.monotonic()
    result = check_files({**BASE, "teams/x/loop.py": "import dataferry.model\nwhile True:\n"
                                                     "    pass\n", "teams/y/model.py":
                          DSL.replace('"x"', '"y"').replace("x@", "y@")})
    assert time.monotonic() - started < 10
    [error] = [f for f in result.findings if f.code == "parse-error"]
    assert error.file == "teams/x/loop.py" and "2" in error.message
    assert result.loaded.ecosystem is not None and "y" in result.loaded.ecosystem.teams


@pytest.mark.parametrize(
    ("body", "fragment", "line"),
    [
        ("import dataferry.model, os\nos._exit(3)\n", "exit code 3", 0),
        ("import dataferry.model\n\ndef f():\n    raise KeyError('boom')\n\nf()\n", "KeyError", 4),
        ("import dataferry.model\nx = (\n", "SyntaxError", 2),
        ("import dataferry.model\nif True:\npass\n", "IndentationError", 3),
        ("import dataferry.model, ctypes\nctypes.string_at(0)\n", "exit code -11", 0),
        ("import dataferry.model\nraise SystemExit\n", "SystemExit", 2),
        ("import dataferry.model\nraise KeyboardInterrupt\n", "KeyboardInterrupt", 2),
        ("import dataferry.model\nclass E(Exception):\n    def __str__(self):\n"
         "        raise ValueError\nraise E()\n", "", 5),
    ],
    ids=["exit", "raise", "syntax", "indent", "crash", "systemexit", "interrupt", "bad-str"],
)
def test_broken_dsl_files(body: str, fragment: str, line: int) -> None:
    result = check_files({**BASE, "teams/x/model.py": body})
    errors = [f for f in result.findings if f.file == "teams/x/model.py"]
    assert [f.code for f in errors] == ["parse-error"], result.findings
    assert fragment in errors[0].message
    if line:
        assert errors[0].line == line


@pytest.mark.parametrize(
    "noise",
    [
        "print('{\"file\": \"teams/x/model.py\", \"teams\": []}')\n",
        "import sys\nsys.stdout.write('not json\\n')\nsys.stdout.flush()\n",
        "import os\nos.write(1, b'{}\\n')\n",
        "import sys\nprint('x' * 200000, file=sys.stderr)\n",
    ],
    ids=["fake-message", "stdout-write", "fd-1", "stderr-flood"],
)
def test_dsl_output_does_not_break_loading(noise: str) -> None:
    result = check_files({**BASE, "teams/x/model.py": noise + DSL})
    assert [f for f in result.findings if f.file == "teams/x/model.py"] == []
    assert result.loaded.ecosystem is not None
    assert list(result.loaded.ecosystem.teams["x"].sources) == ["db"]


def test_dsl_returning_odd_values() -> None:
    body = textwrap.dedent("""\
        from dataferry.model import Column, Team

        team = Team("x", zone="eu", owners=["x@acme.example"], description=object())
        db = team.source("db", kind="sqlite", path=b"x.db")
        db.dataset("t", table=1.5, columns=[Column("id", "int64")], checks={1, 2})
        Team("Bad Name", zone=None, owners=[])
        """)
    result = check_files({**BASE, "teams/x/model.py": body})
    assert not result.ok
