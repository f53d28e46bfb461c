"""The JSON Schema (``ferry schema``) and ``ferry check`` agree (issue 14 point 3).

The schema never rejects a model ``ferry check`` accepts: hypothesis mutates a valid model
into near misses (``yes``/``no`` for booleans, names with dashes and capitals, durations
with spaces, SQL type names, literal passwords, a missing cursor, unknown keys...) and
each mutant goes through ``ferry check`` and through the schema, read as editors read it
(ruamel's YAML 1.2 parser and the ECMA-262 regular expressions of check-jsonschema, and
the ``jsonschema`` library's Python ones). The bundled examples go through the
``check-jsonschema`` CLI itself. Known mistakes that both must reject are listed one by one.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ruamel.yaml
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataferry.model.check import CheckResult, check_model
from dataferry.model.export import export_files
from dataferry.model.jsonschema import model_json_schema
from dataferry.model.load import load_model
from dataferry.model.scaffold import create_example, create_model
from dataferry.model.yamlfile import parse_yaml
from tests.model.test_fuzz import BASE, write

pytest.importorskip("check_jsonschema", reason="pip install -e '.[dev]' installs it")

from check_jsonschema.parsers.yaml import (
    construct_yaml_implementation,
    impl2loader,
)
from check_jsonschema.regex_variants import (
    RegexImplementation,
    RegexVariantName,
)

_read_like_editors = impl2loader(construct_yaml_implementation(),
                                 construct_yaml_implementation(pure=True))


@cache
def validators(kind: str) -> tuple[jsonschema.protocols.Validator, ...]:
    """The schema of ``kind`` with ECMA-262 patterns (as check-jsonschema and editors
    match them) and with Python's ``re`` (as the jsonschema library does)."""
    schema = model_json_schema(kind)
    regress = RegexImplementation(RegexVariantName.default)
    ecma = jsonschema.validators.extend(jsonschema.Draft202012Validator, {
        "pattern": regress.pattern_keyword,
        "patternProperties": regress.patternProperties_keyword,
    })
    return ecma(schema), jsonschema.Draft202012Validator(schema)


def schema_errors(rel: str, text: str) -> list[str]:
    """Why the schema rejects the file ``rel`` (empty: it accepts it)."""
    try:
        data = _read_like_editors(io.BytesIO(text.encode("utf-8")))
    except ruamel.yaml.YAMLError as exc:
        return [f"unparsable for editors: {exc}"]
    errors: list[str] = []
    for kind in ("ecosystem" if rel == "ferry.yaml" else "team", "all"):
        for validator in validators(kind):
            errors += [f"{kind}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
                       for e in validator.iter_errors(data)]
    return errors


def check(files: dict[str, str]) -> CheckResult:
    with tempfile.TemporaryDirectory() as tmp:
        return check_model(write(Path(tmp), dict(files)))


def errors_of(result: CheckResult) -> list[str]:
    return [f.as_text() for f in result.findings if f.severity == "error"]


# --- mutating a valid model ------------------------------------------------------------------

def plain(value: Any) -> Any:
    """ferry's positioned values as plain dicts and lists."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


OPS = """\
team: ops
zone: us
owners: [olga@acme.example]
sources:
  billing:
    kind: mysql
    dsn: mysql://reader@billing.internal:3306/billing
    password: ${file:/run/secrets/billing}
    datasets:
      payments:
        table: payments
        capture: cdc
        primary_key: [id]
        version: 2
        retention: 30
        max_delete_ratio: 0.1
        merge_on_read: false
        platform: local
        columns:
          id: {type: uint64, nullable: false}
          amount: {type: "decimal(18,2)"}
          paid_on: {type: date}
  stock:
    kind: duckdb
    path: data/stock.duckdb
    datasets:
      counts:
        query: select sku, n from counts
        schedule: "0 3 * * *"
        partition_by: [sku]
        columns: {sku: int64, n: int32}
  drops:
    kind: files
    path: data/drops/*.csv
    format: csv
    null_values: ["", NA]
    datasets:
      drops:
        capture: incremental
        lag: 10m
        columns: {at: timestamp, what: string}
transformers:
  paid:
    inputs: [ops.payments]
    sql: select id, amount from payments
    trigger: "*/30 * * * *"
    deprecated: true
    columns: {id: {type: uint64}, amount: {type: "decimal(18,2)"}}
consumers:
  lake:
    sink: {kind: duckdb, path: data/out/lake.duckdb, storage_version: v1.1.0}
    datasets: [ops.paid, {ref: ops.counts, mode: append, freshness: 2h}]
  files:
    sink: {kind: parquet, path: data/out/files}
    datasets: [ops.drops]
"""
BASE = {**BASE, "teams/ops/ops.yaml": OPS}
BASE_DATA = {rel: plain(parse_yaml(text).value) for rel, text in BASE.items()}

NEAR_MISSES: list[Any] = [
    "yes", "no", "on", "off", "y", "n", "Yes", "NO", "true", "false", "True", 0, 1, "0", "1",
    True, False, None, 1.5, -1, 0.5, "0.5", "7", 2**40, "", " ", [], {}, ["a"], {"a": 1},
    "1 hour", "1h ", " 1h", "1H", "0s", "0h0m", "90s", "1h30m", "1d", "2w", "1.5h", "h",
    "bigint", "int", "INT64", "Int64", "int64", " int64 ", "decimal(12,2)", "decimal(12, 2)",
    "DECIMAL(12,2)", "decimal(12)", "decimal(99,2)", "string(40)", "string(0)", "varchar(40)",
    "list<int64>", "list<bigint>", "map<string,int64>", "struct<a:int64, b:string>", "list<",
    "Items-2", "items_2", "Items", "items-2", "_items", "2items", "a" * 64, "crm.customers",
    "crm.Customers", "crm-customers", "crm.customers.x",
    "hunter2", "${env:DB_PASSWORD}", "${file:/run/secrets/pw}", "${env:}", "$DB_PASSWORD",
    "postgresql://u:hunter2@db/x", "postgresql://u:${env:P}@db/x", "postgresql://u@db/x",
    "https://hooks.example/x", "nats://u:pw@127.0.0.1:4222",
    "on_change", "*/5 * * * *", "@daily", "* * *", "every day",
    "incremental", "cdc", "snapshot", "merge", "append", "history", "replace", "postgres",
    "mysql", "sqlite", "duckdb", "files", "http", "parquet", "spark", "csv", "jsonl",
    "public", "restricted", "secret", "production", "mod:func", "mod.sub:func", "func",
    "../x.sql", "/abs.sql", "x.sql", "a@b.example", "nobody", "v1.1.0", "latest", "v1",
]
KEYS = [
    "cursor", "capture", "table", "query", "sql", "sql_file", "python", "endpoint", "records",
    "pagination", "path", "format", "null_values", "nullable", "pii", "deprecated", "version",
    "retention", "max_delete_ratio", "merge_on_read", "lag", "freshness", "schedule",
    "trigger", "primary_key", "password", "dsn", "token", "network", "platform", "engine",
    "export_pii", "min", "max", "colums", "Nullable", "unknown_key", "type", "kind", "mode",
]

Path_ = tuple[Any, ...]


def nodes(value: Any, at: Path_ = ()) -> list[Path_]:
    """Every path into ``value`` (mapping keys and list indexes)."""
    found = [at]
    if isinstance(value, dict):
        for key, child in value.items():
            found += nodes(child, (*at, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += nodes(child, (*at, index))
    return found


def parent_of(data: Any, path: Path_) -> Any:
    for step in path[:-1]:
        data = data[step]
    return data


@st.composite
def mutants(draw: st.DrawFn) -> dict[str, str]:
    """The base model's files with one to three near misses."""
    data = json.loads(json.dumps(BASE_DATA))  # a deep copy
    changed: set[str] = set()
    for _ in range(draw(st.integers(1, 3))):
        rel = draw(st.sampled_from(sorted(data)))
        changed.add(rel)
        path = draw(st.sampled_from(nodes(data[rel])[1:]))
        parent, last = parent_of(data[rel], path), path[-1]
        how = draw(st.sampled_from(["value", "value", "value", "rename", "drop", "add"]))
        if how == "value":
            parent[last] = draw(st.sampled_from(NEAR_MISSES))
        elif how == "drop":
            del parent[last]
        elif isinstance(parent, dict):
            target = parent if how == "rename" else (
                parent[last] if isinstance(parent[last], dict) else parent)
            key = draw(st.sampled_from([*KEYS, str(last).upper(), f"{last}-x", f"{last}s"]))
            value = target.pop(last) if how == "rename" else draw(st.sampled_from(NEAR_MISSES))
            target[key] = value
    flow = draw(st.sampled_from([False, None]))  # None: flow style for inner mappings
    unquote = draw(st.booleans())  # {type: decimal(12,2)}, as ferry reads it whole
    files = {}
    for rel, value in data.items():
        text = yaml.safe_dump(value, sort_keys=False, allow_unicode=True,
                              default_flow_style=flow) if rel in changed else BASE[rel]
        files[rel] = unquote_types(text) if unquote else text
    return files


_QUOTED_TYPE = re.compile(r"'((?:decimal|map|list|struct)[(<][^'#\n]*[)>])'")


def unquote_types(text: str) -> str:
    """``{type: decimal(12,2)}`` as people write it: type expressions unquoted where a
    type goes (after ``type:``, or a column's shorthand in a ``columns: {...}`` line).
    Elsewhere (``dsn: decimal(99, 2)`` in a flow mapping) plain YAML reads a comma as the
    end of the value, and ferry's reading of it whole is not a promise: keep the quotes."""
    def line(text: str) -> str:
        def typed(match: re.Match[str]) -> str:
            before = text[:match.start()]
            return match.group(1) if before.endswith("type: ") or "columns: {" in before \
                else match.group(0)
        return _QUOTED_TYPE.sub(typed, text)

    return "".join(line(part) for part in text.splitlines(keepends=True))


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutants())
def test_the_schema_never_rejects_what_check_accepts(files: dict[str, str]) -> None:
    rejected = {rel: errors for rel, text in files.items() if (errors := schema_errors(rel, text))}
    if rejected:
        result = check(files)
        assert not result.ok, ("the schema rejects a model ferry check accepts", rejected,
                               files)


def test_the_base_model_is_valid_under_both() -> None:
    for rel, text in BASE.items():
        assert schema_errors(rel, text) == []
    assert check(BASE).ok


# --- mistakes both must catch ----------------------------------------------------------------

CRM = BASE["teams/crm/crm.yaml"]
REJECTED_BY_BOTH = {
    "SQL type name": ("{type: int64, nullable: false}", "{type: bigint, nullable: false}"),
    "literal password": ("${env:CRM_DB_PASSWORD}", "hunter2"),
    "password in the DSN": ("crm_reader@db", "crm_reader:hunter2@db"),
    "duration with a space": ("max_age: 1h", "max_age: 1 hour"),
    "dataset name with capitals and a dash": ("      customers:\n", "      Items-2:\n"),
    "incremental without cursor": ("        cursor: updated_at\n", ""),
    "quoted boolean": ("{type: int64, nullable: false}", '{type: int64, nullable: "false"}'),
    "YAML 1.1 boolean": ("classification: restricted, pii: true",
                         "classification: restricted, pii: yes"),
    "number for a boolean": ("{type: timestamp_tz, nullable: false}",
                             "{type: timestamp_tz, nullable: 0}"),
    "quoted number": ("row_count: {min: 1}", 'row_count: {min: "1"}'),
    "no transformer body": ("    sql: |\n", "    query: |\n"),
    "table and query": ("table: public.customers", "table: public.customers\n"
                        "        query: select 1"),
    "cdc on an http source": ("records: data.items", "records: data.items\n"
                              "        capture: cdc"),
    "unknown key": ("description: One row per customer", "descripton: One row per customer"),
    "secret header": ('Authorization: "${env:API_TOKEN}"', "Authorization: Bearer abc"),
    "owner without @": ("owners: [alice@acme.example]", "owners: [alice]"),
    "deprecated: no": ('deprecated: "use crm.customers_v2"', "deprecated: no"),
}


@pytest.mark.parametrize("mistake", sorted(REJECTED_BY_BOTH))
def test_both_reject(mistake: str) -> None:
    old, new = REJECTED_BY_BOTH[mistake]
    assert CRM.count(old) == 1, old
    files = {**BASE, "teams/crm/crm.yaml": CRM.replace(old, new)}
    assert schema_errors("teams/crm/crm.yaml", CRM) == []
    assert schema_errors("teams/crm/crm.yaml", files["teams/crm/crm.yaml"]) != []
    assert not check(files).ok


@pytest.mark.parametrize("value", ["no", "yes", "off", "on", '"false"', "'true'", "0", "1"])
def test_check_asks_for_true_or_false(value: str) -> None:
    old = "email:      {type: string, classification: restricted, pii: true}"
    text = CRM.replace(old, f"email:      {{type: string, classification: restricted, "
                            f"pii: {value}}}")
    errors = errors_of(check({**BASE, "teams/crm/crm.yaml": text}))
    line = text.splitlines().index(next(x for x in text.splitlines() if "pii: " + value in x))
    column = text.splitlines()[line].index(f"pii: {value}") + len("pii: ") + 1
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"teams/crm/crm.yaml:{line + 1}:{column}: error[invalid-field]")
    assert "write true or false" in errors[0]


@pytest.mark.parametrize("value", ["true", "false", "True", "FALSE"])
def test_yaml_booleans_stay_booleans(value: str) -> None:
    text = CRM.replace("classification: restricted, pii: true",
                       f"classification: restricted, pii: {value}")
    assert check({**BASE, "teams/crm/crm.yaml": text}).ok
    assert schema_errors("teams/crm/crm.yaml", text) == []


# --- the bundled models -----------------------------------------------------------------------

def test_the_examples_pass_check_jsonschema_and_check(tmp_path: Path) -> None:
    """``ferry init --example`` and ``ferry init``: valid for the check-jsonschema CLI."""
    create_example(tmp_path / "acme")
    create_model(tmp_path / "new")
    write(tmp_path / "fixture", dict(BASE))
    for kind in ("all", "ecosystem", "team"):
        (tmp_path / f"{kind}.json").write_text(json.dumps(model_json_schema(kind)))
    command = [sys.executable, "-m", "check_jsonschema", "--schemafile"]
    ecosystems = [str(tmp_path / m / "ferry.yaml") for m in ("acme", "new", "fixture")]
    teams = sorted(str(p) for p in tmp_path.glob("*/teams/*/*.yaml"))
    assert len(teams) >= 5
    for schema, paths in (("ecosystem", ecosystems), ("team", teams),
                          ("all", ecosystems + teams)):
        done = subprocess.run([*command, str(tmp_path / f"{schema}.json"), *paths],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    for model in ("acme", "new", "fixture"):
        assert check_model(tmp_path / model).ok


def test_the_example_written_back_is_valid_under_the_schema(tmp_path: Path) -> None:
    """Teams written in the Python DSL too, as ``ferry export-model`` writes them."""
    create_example(tmp_path)
    loaded = load_model(tmp_path)
    assert loaded.ecosystem is not None
    for rel, text in export_files(loaded.ecosystem).items():
        assert schema_errors(rel, text) == [], rel


@pytest.mark.parametrize("kind", ["all", "ecosystem", "team"])
def test_the_schemas_are_draft_2020_12(kind: str) -> None:
    jsonschema.Draft202012Validator.check_schema(model_json_schema(kind))


def test_a_check_value_of_no_allowed_type_is_one_finding() -> None:
    text = CRM.replace("range: {column: balance, min: 0}", "range: {column: balance, min: true}")
    errors = errors_of(check({**BASE, "teams/crm/crm.yaml": text}))
    line = next(n for n, x in enumerate(text.splitlines(), 1) if "min: true" in x)
    column = text.splitlines()[line - 1].index("true") + 1
    assert errors == [f"teams/crm/crm.yaml:{line}:{column}: error[invalid-field]: team crm: "
                      "sources.crmdb.datasets.customers.checks.3.range.min: true is not a "
                      "number or a text (e.g. a date)"]
