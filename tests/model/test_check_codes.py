"""Every finding code of MODEL.md, with the file, line and column it points at."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from dataferry.model.check import check_model
from tests.conftest import ECOSYSTEM

CRM = """\
team: crm
zone: eu
owners: [alice@acme.example]
sources:
  crmdb:
    kind: postgres
    dsn: postgresql://crm_reader@db.internal:5432/crm
    password: ${env:CRM_DB_PASSWORD}
    datasets:
      customers:
        table: public.customers
        capture: incremental
        cursor: updated_at
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          email: {type: string, classification: restricted, pii: true}
          country: {type: string(2)}
          updated_at: {type: timestamp_tz, nullable: false}
        checks:
          - not_null: [id]
          - unique: [id]
"""

SALES = """\
team: sales
zone: eu
owners: [sam@acme.example]
consumers:
  warehouse:
    sink: {kind: duckdb, path: wh.duckdb}
    datasets:
      - ref: crm.customers
        mode: merge
"""


def findings(root: Path) -> list[tuple[str, str, int, int, str]]:
    result = check_model(root)
    return [(f.code, f.file, f.line, f.column, f.message) for f in result.findings]


def codes(root: Path) -> set[str]:
    return {f[0] for f in findings(root)}


def only(root: Path, code: str) -> tuple[str, str, int, int, str]:
    found = [f for f in findings(root) if f[0] == code]
    assert len(found) == 1, findings(root)
    return found[0]


def test_valid_model_has_no_findings(model: Callable[..., Path]) -> None:
    root = model({"teams/crm/crm.yaml": CRM, "teams/sales/sales.yaml": SALES})
    assert findings(root) == []


def test_parse_error_points_at_the_line(model: Callable[..., Path]) -> None:
    root = model({"teams/crm/crm.yaml": CRM.replace("primary_key: [id]", "primary_key: [id")})
    code, file, line, _, message = only(root, "parse-error")
    assert (file, line) == ("teams/crm/crm.yaml", 15)
    assert "invalid YAML" in message


def test_unknown_key_suggests_the_right_one(model: Callable[..., Path]) -> None:
    root = model({"teams/crm/crm.yaml": CRM.replace("cursor: updated_at", "cursr: updated_at")})
    found = [f for f in findings(root) if f[0] == "invalid-field"]
    assert found[0][1:4] == ("teams/crm/crm.yaml", 13, 9)
    assert "unknown key 'cursr'" in found[0][4] and "did you mean 'cursor'" in found[0][4]


def test_missing_required_key(model: Callable[..., Path]) -> None:
    root = model({"teams/crm/crm.yaml": CRM.replace("    dsn: postgresql://crm_reader@db.internal:5432/crm\n", "")})
    found = [f for f in findings(root) if f[0] == "invalid-field"]
    assert any("missing required key 'dsn'" in f[4] and f[2] == 6 for f in found), found


def test_wrong_value_type_and_bad_choice(model: Callable[..., Path]) -> None:
    text = CRM.replace("capture: incremental", "capture: incrementl").replace(
        "nullable: false}\n          email", "nullable: maybe}\n          email")
    root = model({"teams/crm/crm.yaml": text})
    found = [f for f in findings(root) if f[0] == "invalid-field"]
    messages = " | ".join(f[4] for f in found)
    assert "did you mean 'incremental'" in messages
    assert "nullable" in messages


def test_a_key_column_declared_nullable(model: Callable[..., Path]) -> None:
    root = model({"teams/crm/crm.yaml": CRM.replace("id: {type: int64, nullable: false}",
                                                    "id: {type: int64, nullable: true}")})
    code, file, line, column, message = only(root, "invalid-field")
    assert (file, line, column) == ("teams/crm/crm.yaml", 16, 39)
    assert "crm.customers column id is part of the primary key" in message
    assert "remove nullable: true" in message
    left_out = CRM.replace("id: {type: int64, nullable: false}", "id: {type: int64}")
    assert findings(model({"teams/crm/crm.yaml": left_out})) == []  # stored not null anyway


def test_bad_name(model: Callable[..., Path]) -> None:
    root = model({"teams/crm/crm.yaml": CRM.replace("      customers:", "      Customers-2:")})
    found = [f for f in findings(root) if f[0] == "invalid-field"]
    assert any("'Customers-2' is not a valid name" in f[4] for f in found), found


def test_unknown_type_with_suggestion(model: Callable[..., Path]) -> None:
    root = model({"teams/crm/crm.yaml": CRM.replace("{type: string(2)}", "{type: varchar(2)}")})
    code, file, line, column, message = only(root, "unknown-type")
    assert (file, line, column) == ("teams/crm/crm.yaml", 18, 27)
    assert "varchar" in message


def test_duplicate_names(model: Callable[..., Path]) -> None:
    other = """\
    team: crm
    sources:
      second:
        kind: sqlite
        path: x.db
        datasets:
          customers:
            table: c
            columns: {id: int64}
    transformers:
      customers:
        inputs: [crm.customers]
        sql: select 1 as id
        columns: {id: int64}
    """
    root = model({"teams/crm/crm.yaml": CRM, "teams/crm/more.yaml": other})
    dups = [f for f in findings(root) if f[0] == "duplicate-name"]
    assert len(dups) == 2, dups
    assert all(f[1] == "teams/crm/more.yaml" for f in dups)


def test_duplicate_yaml_key(model: Callable[..., Path]) -> None:
    root = model({"teams/crm/crm.yaml": CRM.replace("      customers:\n", "      customers:\n        table: again\n", 1)})
    code, file, line, _, message = only(root, "duplicate-name")
    assert line == 12 and "appears twice" in message


def test_unknown_reference_suggests(model: Callable[..., Path]) -> None:
    root = model({"teams/crm/crm.yaml": CRM,
                  "teams/sales/sales.yaml": SALES.replace("crm.customers", "crm.custmers")})
    code, file, line, column, message = only(root, "unknown-reference")
    assert (file, line, column) == ("teams/sales/sales.yaml", 8, 14)
    assert "did you mean 'crm.customers'" in message


def test_unknown_zone_and_column(model: Callable[..., Path]) -> None:
    root = model({"teams/crm/crm.yaml": CRM.replace("zone: eu", "zone: euu").replace(
        "not_null: [id]", "not_null: [idd]")})
    found = [f for f in findings(root) if f[0] == "unknown-reference"]
    messages = " | ".join(f[4] for f in found)
    assert "unknown zone 'euu'; did you mean 'eu'" in messages
    assert "unknown column 'idd'; did you mean 'id'" in messages


def test_cycle_prints_the_cycle(model: Callable[..., Path]) -> None:
    text = CRM + """\
transformers:
  a:
    inputs: [crm.b]
    sql: select * from b
    columns: {id: int64}
  b:
    inputs: [crm.a, crm.customers]
    sql: select * from a
    columns: {id: int64}
"""
    root = model({"teams/crm/crm.yaml": text})
    code, file, line, _, message = only(root, "cycle")
    assert "crm.a -> crm.b -> crm.a" in message


def test_missing_primary_key(model: Callable[..., Path]) -> None:
    root = model({"teams/crm/crm.yaml": CRM.replace("primary_key: [id]", "primary_key: []"),
                  "teams/sales/sales.yaml": SALES})
    found = [f for f in findings(root) if f[0] == "missing-primary-key"]
    assert len(found) == 2  # the unique check and the merge need
    assert any(f[1] == "teams/sales/sales.yaml" for f in found)


def test_missing_cursor(model: Callable[..., Path]) -> None:
    root = model({"teams/crm/crm.yaml": CRM.replace("        cursor: updated_at\n", "")})
    code, file, line, column, message = only(root, "missing-cursor")
    assert (file, line) == ("teams/crm/crm.yaml", 12)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("password: ${env:CRM_DB_PASSWORD}", "password: hunter2hunter2"),
        ("dsn: postgresql://crm_reader@db", "dsn: postgresql://crm_reader:s3cret@db"),
    ],
)
def test_plaintext_secret(model: Callable[..., Path], old: str, new: str) -> None:
    root = model({"teams/crm/crm.yaml": CRM.replace(old, new)})
    code, file, line, column, message = only(root, "plaintext-secret")
    assert "hunter2" not in message and "s3cret" not in message
    assert line in (7, 8)


@pytest.mark.parametrize(("notify", "where"), [
    ("      - webhook: https://hook:s3cret@hooks.example/crm\n", "webhook"),
    ("      - {webhook: https://hooks.example/crm, secret: s3cret-s3cret}\n", "secret"),
    ("      - {nats: sales.datasets, server: 'nats://app:s3cret@nats.example:4222'}\n",
     "NATS server"),
])
def test_plaintext_secret_in_a_notify_target(model: Callable[..., Path], notify: str,
                                             where: str) -> None:
    sales = SALES + "    notify:\n" + notify
    root = model({"teams/crm/crm.yaml": CRM, "teams/sales/sales.yaml": sales})
    code, file, line, _, message = only(root, "plaintext-secret")
    assert file == "teams/sales/sales.yaml" and line == 11
    assert where in message and "s3cret" not in message


@pytest.mark.parametrize("setting", [
    "openlineage: {url: 'http://ol:s3cret@marquez:5000'}",
    "openlineage: {url: 'http://marquez:5000', api_key: s3cret-key}",
])
def test_plaintext_secret_in_openlineage(model: Callable[..., Path], setting: str) -> None:
    root = model({"teams/crm/crm.yaml": CRM}, ecosystem=ECOSYSTEM + setting + "\n")
    code, file, _, _, message = only(root, "plaintext-secret")
    assert file == "ferry.yaml" and "openlineage" in message and "s3cret" not in message
    fine = model({"teams/crm/crm.yaml": CRM}, ecosystem=ECOSYSTEM + (
        "openlineage: {url: 'http://marquez:5000', api_key: '${env:OL_KEY}'}\n"))
    assert "plaintext-secret" not in codes(fine)


def test_policy_violation_across_zones(model: Callable[..., Path]) -> None:
    sales_us = SALES.replace("zone: eu", "zone: us")
    root = model({"teams/crm/crm.yaml": CRM, "teams/sales/sales.yaml": sales_us})
    code, file, line, _, message = only(root, "policy-violation")
    assert "email" in message and file == "teams/sales/sales.yaml"
    masked = sales_us.replace("mode: merge", "mode: merge\n        mask: [email]")
    root = model({"teams/sales/sales.yaml": masked})
    assert "policy-violation" not in codes(root)


def test_pii_needs_export_pii(model: Callable[..., Path]) -> None:
    text = CRM.replace("classification: restricted, pii: true", "classification: public, pii: true")
    root = model({"teams/crm/crm.yaml": text,
                  "teams/sales/sales.yaml": SALES.replace("zone: eu", "zone: us")})
    assert "pii" in only(root, "policy-violation")[4]


def test_zone_platforms_policy(model: Callable[..., Path]) -> None:
    eco = """\
ecosystem: acme
zones:
  eu: {platforms: [local]}
platforms:
  hq: {engine: duckdb, network: hq-lan}
"""
    text = CRM.replace("    password:", "    network: hq-lan\n    password:")
    root = model({"teams/crm/crm.yaml": text}, ecosystem=eco)
    assert "platform 'hq'" in only(root, "policy-violation")[4]


def test_misplaced_definition(model: Callable[..., Path]) -> None:
    root = model({"teams/sales/crm.yaml": CRM, "crm.yaml": SALES})
    found = [f for f in findings(root) if f[0] == "misplaced-definition"]
    assert {f[1] for f in found} == {"teams/sales/crm.yaml", "crm.yaml"}


def test_not_approved(model: Callable[..., Path]) -> None:
    text = CRM.replace("primary_key: [id]", "primary_key: [id]\n        allowed_consumers: [finance]")
    eco_teams = {"teams/finance/f.yaml": "team: finance\nzone: eu\nowners: [f@acme.example]\n"}
    root = model({"teams/crm/crm.yaml": text, "teams/sales/sales.yaml": SALES, **eco_teams})
    code, file, line, _, message = only(root, "not-approved")
    assert file == "teams/sales/sales.yaml" and "finance" in message


def test_deprecated_dataset_is_a_warning(model: Callable[..., Path]) -> None:
    text = CRM.replace("primary_key: [id]", "primary_key: [id]\n        deprecated: use crm.people")
    root = model({"teams/crm/crm.yaml": text, "teams/sales/sales.yaml": SALES})
    result = check_model(root)
    assert result.ok
    [finding] = result.findings
    assert finding.code == "deprecated-dataset" and finding.severity == "warning"
    assert "use crm.people" in finding.message


def test_all_findings_at_once(model: Callable[..., Path]) -> None:
    text = (CRM.replace("cursor: updated_at", "cursr: updated_at")
            .replace("{type: string(2)}", "{type: strng}")
            .replace("password: ${env:CRM_DB_PASSWORD}", "password: literal-pass"))
    root = model({"teams/crm/crm.yaml": text,
                  "teams/sales/sales.yaml": SALES.replace("crm.customers", "crm.nothing")})
    assert {"invalid-field", "plaintext-secret", "unknown-reference"} <= codes(root)


def test_invalid_dataset_does_not_cause_follow_on_references(model: Callable[..., Path]) -> None:
    root = model({"teams/crm/crm.yaml": CRM.replace("capture: incremental", "capture: 7"),
                  "teams/sales/sales.yaml": SALES})
    assert codes(root) == {"invalid-field"}


def test_cli_text_and_json(model: Callable[..., Path], ferry: Callable[..., object]) -> None:
    root = model({"teams/crm/crm.yaml": CRM,
                  "teams/sales/sales.yaml": SALES.replace("crm.customers", "crm.custmers")})
    text = ferry("check", "--model", root)
    assert text.code == 1
    assert "teams/sales/sales.yaml:8:14: error[unknown-reference]:" in text.out
    data = ferry("check", "--model", root, "--json")
    assert data.code == 1
    payload = json.loads(data.out)
    assert payload["ok"] is False
    assert payload["findings"][0] == {
        "severity": "error", "code": "unknown-reference", "file": "teams/sales/sales.yaml",
        "line": 8, "column": 14, "message": payload["findings"][0]["message"],
    }
    good = model({"teams/sales/sales.yaml": SALES})
    assert ferry("check", "--model", good).code == 0


def test_usage_errors_exit_2(tmp_path: Path, ferry: Callable[..., object]) -> None:
    assert ferry("check", "--model", tmp_path / "nope").code == 2
    assert ferry("check", "--model", tmp_path).code == 2
    assert ferry("check", "--bogus-flag").code == 2


def test_findings_never_quote_secret_values(model: Callable[..., Path]) -> None:
    text = CRM.replace("password: ${env:CRM_DB_PASSWORD}", "password: [hunter2hunter2]")
    root = model({"teams/crm/crm.yaml": text})
    found = findings(root)
    assert found and all("hunter2" not in f[4] for f in found)
