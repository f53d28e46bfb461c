"""The Python DSL gives the same model as YAML, and runs safely in a subprocess."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dataferry.model.check import check_model
from dataferry.model.load import load_model

YAML = """\
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
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          email: {type: string, pii: true}
          balance: {type: decimal(12,2)}
transformers:
  top:
    inputs: [crm.customers]
    sql: select id from customers
    columns: {id: {type: int64}}
consumers:
  wh:
    sink: {kind: duckdb, path: wh.duckdb}
    datasets:
      - ref: crm.customers
        mode: merge
        mask: [email]
"""

DSL = """\
from dataferry.model import Column, Need, Team

team = Team("crm", zone="eu", owners=["alice@acme.example"])
db = team.source("crmdb", kind="postgres", dsn="postgresql://crm_reader@db.internal:5432/crm",
                 password="${env:CRM_DB_PASSWORD}")
db.dataset("customers", table="public.customers", primary_key=["id"],
           columns=[Column("id", "int64", nullable=False), Column("email", "string", pii=True),
                    Column("balance", "decimal(12, 2)")])
team.transformer("top", inputs=["crm.customers"], sql="select id from customers",
                 columns=[Column("id", "int64")])
team.consumer("wh", sink={"kind": "duckdb", "path": "wh.duckdb"},
              datasets=[Need("crm.customers", mode="merge", mask=["email"])])
"""


def test_dsl_and_yaml_give_the_same_model(model: Callable[..., Path], tmp_path: Path) -> None:
    from_yaml = load_model(model({"teams/crm/crm.yaml": YAML}))
    (tmp_path / "model" / "teams" / "crm" / "crm.yaml").unlink()
    from_dsl = load_model(model({"teams/crm/model.py": DSL}))
    assert from_yaml.report.findings == [] and from_dsl.report.findings == []
    assert from_dsl.ecosystem == from_yaml.ecosystem
    assert from_dsl.ecosystem is not None and "crm" in from_dsl.ecosystem.teams


def test_findings_point_at_the_dsl_line(model: Callable[..., Path]) -> None:
    root = model({"teams/crm/model.py": DSL.replace('Need("crm.customers"', 'Need("crm.custmers"')})
    [finding] = check_model(root).findings
    assert finding.code == "unknown-reference"
    assert (finding.file, finding.line) == ("teams/crm/model.py", 11)


def test_dsl_outside_its_team_folder_is_misplaced(model: Callable[..., Path]) -> None:
    root = model({"generate.py": DSL})
    assert [f.code for f in check_model(root).findings] == ["misplaced-definition"]


def test_python_files_without_the_dsl_are_not_run(model: Callable[..., Path]) -> None:
    root = model({"teams/crm/crm.yaml": YAML, "teams/crm/transforms.py": "raise SystemExit(1)\n"})
    assert check_model(root).findings == []


@pytest.mark.parametrize(
    ("body", "fragment", "line"),
    [
        ("import dataferry.model\nx = 1\nraise ValueError('boom')\n", "ValueError: boom", 3),
        ("import dataferry.model\ndef f(:\n", "SyntaxError", 2),
        ("import dataferry.model, os\nos._exit(3)\n", "exit code 3", 0),
        ("import dataferry.model, sys\nsys.exit(4)\n", "SystemExit: 4", 2),
    ],
)
def test_broken_dsl_files_are_parse_errors(model: Callable[..., Path], body: str, fragment: str,
                                           line: int) -> None:
    root = model({"teams/crm/model.py": body, "teams/crm/other.py": DSL})
    findings = check_model(root).findings
    assert [(f.code, f.file) for f in findings] == [("parse-error", "teams/crm/model.py")]
    assert fragment in findings[0].message and findings[0].line == line


def test_endless_loop_times_out(model: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_DSL_TIMEOUT", "2")
    root = model({"teams/crm/a.py": "import dataferry.model\nwhile True:\n    pass\n",
                  "teams/crm/b.py": DSL})
    started = time.monotonic()
    findings = check_model(root).findings
    assert time.monotonic() - started < 10
    assert [(f.code, f.file) for f in findings] == [("parse-error", "teams/crm/a.py")]
    assert "did not finish within 2 s" in findings[0].message


def test_printing_does_not_break_loading(model: Callable[..., Path]) -> None:
    root = model({"teams/crm/model.py": "print('{not json')\n" + DSL})
    result = check_model(root)
    assert result.findings == [] and result.loaded.ecosystem is not None
    assert "crm" in result.loaded.ecosystem.teams
