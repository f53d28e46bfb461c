"""Model files are loaded without positions; a finding's file:line:col comes from parsing
its file again: it must point where parsing with positions from the start pointed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dataferry.model.check import check_model, lint_model
from dataferry.model.load import load_model
from tests.model.test_check_codes import CRM, SALES


def where(root: Path) -> list[tuple[str, str, int, int]]:
    return [(f.code, f.file, f.line, f.column) for f in check_model(root).findings]


def test_a_file_with_anchors_and_merge_keys_points_at_the_lines(
        model: Callable[..., Path]) -> None:
    """Anchors, aliases and merge keys are read with positions from the start."""
    crm = CRM.replace("        columns:\n          id: {type: int64, nullable: false}\n",
                      "        columns:\n          id: &key {type: int64, nullable: false}\n"
                      "          other_id: {<<: *key, type: int65}\n")
    assert where(model({"teams/crm/crm.yaml": crm})) == [
        ("unknown-type", "teams/crm/crm.yaml", 17, 38)]


def test_findings_in_several_files_of_one_team(model: Callable[..., Path]) -> None:
    more = "team: crm\nsources:\n  other:\n    kind: postgres\n    dsn: postgresql://x@y/z\n" \
           "    datasets:\n      customers:\n        table: t\n        primary_key: [id]\n" \
           "        columns: {id: {type: int64, nullable: false}}\n"
    root = model({"teams/crm/crm.yaml": CRM, "teams/crm/more.yaml": more,
                  "teams/sales/sales.yaml": SALES.replace("ref: crm.customers",
                                                          "ref: crm.custmers")})
    assert sorted(where(root)) == [
        ("duplicate-name", "teams/crm/more.yaml", 7, 7),  # at the key, in the second file
        ("unknown-reference", "teams/sales/sales.yaml", 8, 14),
    ]


def test_positions_are_those_of_the_content_loaded(model: Callable[..., Path]) -> None:
    """A file changed after loading (a server reloading while someone edits) does not
    move a finding: its position is found in what was loaded."""
    root = model({"teams/crm/crm.yaml": CRM, "teams/sales/sales.yaml": SALES.replace(
        "ref: crm.customers", "ref: crm.custmers")})
    loaded = load_model(root)
    (root / "teams/sales/sales.yaml").write_text("# moved down\n" * 20 + SALES)
    lint_model(loaded)
    assert [(f.file, f.line, f.column) for f in loaded.report.sorted()] == [
        ("teams/sales/sales.yaml", 8, 14)]


def test_a_model_without_findings_keeps_no_positions(model: Callable[..., Path]) -> None:
    """What a large model's memory is spared: no file is parsed again, no positioned
    values are kept, only each file's content (to find a later finding's position)."""
    root = model({"teams/crm/crm.yaml": CRM, "teams/sales/sales.yaml": SALES})
    loaded = load_model(root)
    lint_model(loaded)
    assert loaded.report.findings == []
    locator = loaded.report.locator
    assert locator.parsed == {}
    assert {node for _, node, _ in locator.roots.values()} == {None}
    assert sorted(locator.sources) == ["ferry.yaml", "teams/crm/crm.yaml",
                                       "teams/sales/sales.yaml"]
