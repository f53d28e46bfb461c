"""The model commands as a user runs them: init, check, codeowners, schema, export-model."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from dataferry.model.load import load_model


def test_init_creates_a_valid_empty_model(tmp_path: Path, ferry: Callable[..., object]) -> None:
    target = tmp_path / "My Ecosystem"
    out = ferry("init", target)
    assert out.code == 0 and "ferry check" in out.out
    assert (target / "ferry.yaml").read_text().startswith("ecosystem: my_ecosystem\n")
    assert (target / ".github" / "workflows" / "ferry-check.yml").exists()
    assert ferry("check", "--model", target).code == 0
    again = ferry("init", target)
    assert again.code == 2 and "already holds a model" in again.err


def test_init_refuses_a_non_empty_directory(tmp_path: Path, ferry: Callable[..., object]) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    out = ferry("init", tmp_path)
    assert out.code == 2 and "not empty" in out.err
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_init_example_is_valid_and_has_data(tmp_path: Path, ferry: Callable[..., object]) -> None:
    out = ferry("init", "--example", tmp_path / "acme")
    assert out.code == 0
    check = ferry("check", "--model", tmp_path / "acme", "--json")
    payload = json.loads(check.out)
    assert check.code == 0 and payload["ok"] is True
    assert {f["code"] for f in payload["findings"]} == {"deprecated-dataset"}
    assert (tmp_path / "acme" / "data" / "shop.db").stat().st_size > 10_000


def test_codeowners(tmp_path: Path, ferry: Callable[..., object]) -> None:
    ferry("init", "--example", tmp_path / "acme")
    out = ferry("codeowners", "--model", tmp_path / "acme")
    assert out.code == 0
    lines = out.out.splitlines()
    assert "/teams/shop/ alice@acme.example bob@acme.example" in lines
    assert "/ferry.yaml platform-team@acme.example" in lines
    assert lines.index("/* platform-team@acme.example") < lines.index("/teams/shop/ alice@acme.example bob@acme.example")


def test_schema_is_json_schema(ferry: Callable[..., object]) -> None:
    out = ferry("schema")
    schema = json.loads(out.out)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert "$defs" in schema and "TeamFile" in schema["$defs"]
    team = json.loads(ferry("schema", "--kind", "team").out)
    assert "team" in team["required"] and team["additionalProperties"] is False
    assert ferry("schema", "--kind", "nope").code == 2


def test_export_model_round_trips(tmp_path: Path, ferry: Callable[..., object]) -> None:
    ferry("init", "--example", tmp_path / "acme")
    out = ferry("export-model", "--model", tmp_path / "acme", "--out", tmp_path / "copy")
    assert out.code == 0
    original = load_model(tmp_path / "acme").ecosystem
    copy = load_model(tmp_path / "copy")
    assert copy.ecosystem == original
    assert (tmp_path / "copy" / "teams" / "shop" / "daily_sales.sql").exists()
    assert (tmp_path / "copy" / "teams" / "marketing" / "marketing.yaml").exists()  # from the DSL
    stream = ferry("export-model", "--model", tmp_path / "acme")
    assert stream.out.startswith("---\n# file: ferry.yaml\n")
    assert "# file: teams/marketing/marketing.yaml" in stream.out
    as_json = json.loads(ferry("export-model", "--model", tmp_path / "acme", "--json").out)
    assert as_json["ecosystem"] == "acme" and "shop" in as_json["teams"]


def test_export_refuses_an_invalid_model(model: Callable[..., Path], ferry: Callable[..., object]) -> None:
    root = model({"teams/a/a.yaml": "team: a\nzone: nowhere\nowners: [a@b.c]\n"})
    out = ferry("export-model", "--model", root)
    assert out.code == 1 and "unknown zone" in out.err and out.out == ""


def test_model_is_found_from_a_subdirectory(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "dataferry.cli", "init", "--example", str(tmp_path / "m")],
                   check=True, capture_output=True)
    done = subprocess.run([sys.executable, "-m", "dataferry.cli", "check"],
                          cwd=tmp_path / "m" / "teams" / "shop", capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "ok: the model is valid" in done.stdout
    nowhere = subprocess.run([sys.executable, "-m", "dataferry.cli", "check"], cwd=tmp_path,
                             capture_output=True, text=True)
    assert nowhere.returncode == 2
    assert nowhere.stderr.startswith("error: no ferry.yaml") and "Traceback" not in nowhere.stderr


def test_version_and_help(ferry: Callable[..., object]) -> None:
    assert ferry("--version").out.startswith("ferry ")
    out = ferry("--help")
    assert out.code == 0 and "check" in out.out


def test_export_out_copies_transformer_code_but_not_dsl(tmp_path: Path, ferry: Callable[..., object]) -> None:
    ferry("init", "--example", tmp_path / "acme")
    assert ferry("export-model", "--model", tmp_path / "acme", "--out", tmp_path / "copy").code == 0
    assert (tmp_path / "copy" / "teams" / "finance" / "transforms.py").exists()
    assert not (tmp_path / "copy" / "teams" / "marketing" / "model.py").exists()
    assert ferry("check", "--model", tmp_path / "copy").code == 0


def test_consumer_need_shorthand(model: Callable[..., Path], ferry: Callable[..., object]) -> None:
    team = ("team: a\nzone: eu\nowners: [a@acme.example]\nsources:\n  s:\n    kind: sqlite\n"
            "    path: a.db\n    datasets:\n      d: {table: d, columns: {id: int64}}\n"
            "consumers:\n  c:\n    sink: {kind: sqlite, path: c.db}\n    datasets: [a.d]\n")
    root = model({"teams/a/a.yaml": team})
    assert ferry("check", "--model", root).code == 0
    loaded = load_model(root)
    assert loaded.ecosystem is not None
    assert loaded.ecosystem.teams["a"].consumers["c"].datasets[0].ref == "a.d"
