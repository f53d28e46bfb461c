"""``ferry check --base``: backwards compatibility and ownership against a git ref."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dataferry.model.check import check_model
from tests.conftest import git, write_files

ORDERS = """\
team: sales
zone: eu
owners: [sam@acme.example]
sources:
  db:
    kind: sqlite
    path: sales.db
    datasets:
      orders:
        table: orders
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
          amount: {{type: {amount}}}
          note: {{type: string}}
"""

BI = """\
team: bi
zone: eu
owners: [bea@acme.example]
consumers:
  dash:
    sink: {kind: sqlite, path: bi.db}
    datasets:
      - ref: sales.orders
        columns: [id, amount]
"""


@pytest.fixture
def repo(model: Callable[..., Path]) -> Callable[..., Path]:
    """A git repo whose main commit has ``amount`` of type ``base_type``."""

    def make(base_type: str, *, consumers: bool = True) -> Path:
        files = {"teams/sales/sales.yaml": ORDERS.format(amount=base_type)}
        if consumers:
            files["teams/bi/bi.yaml"] = BI
        root = model(files)
        git(root, "init", "-q", "-b", "main")
        git(root, "add", "-A")
        git(root, "commit", "-qm", "base")
        return root

    return make


def change(root: Path, new_type: str) -> list[tuple[str, str]]:
    write_files(root, {"teams/sales/sales.yaml": ORDERS.format(amount=new_type)})
    result = check_model(root, base="main")
    return [(f.code, f.severity) for f in result.findings]


WIDENING = [
    ("int8", "int16"), ("int16", "int32"), ("int32", "int64"), ("int8", "int64"),
    ("uint8", "uint16"), ("uint16", "uint32"), ("uint32", "uint64"), ("uint8", "int16"),
    ("uint32", "int64"), ("int32", "decimal(12,0)"), ("float32", "float64"),
    ("float16", "float32"), ("bfloat16", "float32"), ("decimal(10,2)", "decimal(18,2)"),
    ("decimal(10,2)", "decimal(12,4)"), ("string(10)", "string(100)"), ("string(10)", "string"),
    ("list<int32>", "list<int64>"), ("map<string,int32>", "map<string,int64>"),
    ("struct<a:int32>", "struct<a:int64, b:string>"),
]


@pytest.mark.parametrize(("old", "new"), WIDENING)
def test_widening_is_allowed(repo: Callable[..., Path], old: str, new: str) -> None:
    assert change(repo(old), new) == []


@pytest.mark.parametrize(("old", "new"), [(new, old) for old, new in WIDENING])
def test_narrowing_is_breaking(repo: Callable[..., Path], old: str, new: str) -> None:
    assert change(repo(old), new) == [("breaking-change", "error")]


@pytest.mark.parametrize(("old", "new"), [
    ("int64", "string"), ("string", "int64"), ("timestamp", "timestamp_tz"), ("date", "timestamp"),
    ("int64", "float64"), ("json", "string"), ("list<int64>", "int64"),
])
def test_changing_the_type_family_is_breaking(repo: Callable[..., Path], old: str, new: str) -> None:
    assert change(repo(old), new) == [("breaking-change", "error")]


def test_nullable_to_not_null_is_breaking(repo: Callable[..., Path]) -> None:
    root = repo("int64")
    write_files(root, {"teams/sales/sales.yaml": ORDERS.format(amount="int64").replace(
        "amount: {type: int64}", "amount: {type: int64, nullable: false}")})
    result = check_model(root, base="main")
    assert [(f.code, f.line) for f in result.findings] == [("breaking-change", 14)]
    assert "not nullable" in result.findings[0].message


def test_a_key_column_made_not_nullable_is_not_breaking(repo: Callable[..., Path]) -> None:
    root = repo("int64")
    loose = ORDERS.format(amount="int64").replace("id: {type: int64, nullable: false}",
                                                  "id: {type: int64}")
    write_files(root, {"teams/sales/sales.yaml": loose})
    git(root, "commit", "-qam", "id left nullable by default")
    write_files(root, {"teams/sales/sales.yaml": ORDERS.format(amount="int64")})
    assert check_model(root, base="main").findings == []  # the store never held a null id


def test_removing_a_received_column_is_breaking_but_not_an_unreceived_one(
    repo: Callable[..., Path],
) -> None:
    root = repo("int64")
    text = ORDERS.format(amount="int64")
    write_files(root, {"teams/sales/sales.yaml": text.replace("          note: {type: string}\n", "")})
    assert check_model(root, base="main").findings == []
    write_files(root, {"teams/sales/sales.yaml": text.replace("          amount: {type: int64}\n", "")})
    found = {f.code: f for f in check_model(root, base="main").findings}
    assert set(found) == {"breaking-change", "unknown-reference"}  # bi asks for it too
    assert "'amount'" in found["breaking-change"].message


def test_removing_a_dataset_with_consumers(repo: Callable[..., Path]) -> None:
    root = repo("int64")
    write_files(root, {"teams/sales/sales.yaml": "team: sales\nzone: eu\nowners: [sam@acme.example]\n"})
    codes = {f.code for f in check_model(root, base="main").findings}
    assert codes == {"breaking-change", "unknown-reference"}


def test_removing_a_dataset_without_consumers_is_fine(model: Callable[..., Path]) -> None:
    root = model({"teams/sales/sales.yaml": ORDERS.format(amount="int64")})
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    write_files(root, {"teams/sales/sales.yaml": "team: sales\nzone: eu\nowners: [sam@acme.example]\n"})
    assert check_model(root, base="main").findings == []


def test_additions_are_not_breaking(repo: Callable[..., Path]) -> None:
    root = repo("int64")
    text = ORDERS.format(amount="int64") + "          extra: {type: string}\n"
    text += "      more:\n        table: more\n        columns: {id: int64}\n"
    write_files(root, {"teams/sales/sales.yaml": text,
                       "teams/bi/bi2.yaml": BI.replace("dash:", "dash2:").replace("team: bi\nzone: eu\nowners: [bea@acme.example]\n", "team: bi\n")})
    assert check_model(root, base="main").findings == []


def test_adding_a_not_null_column_to_a_received_dataset_is_breaking(repo: Callable[..., Path]) -> None:
    root = repo("int64")
    text = ORDERS.format(amount="int64") + "          extra: {type: string, nullable: false}\n"
    write_files(root, {"teams/sales/sales.yaml": text})
    assert [f.code for f in check_model(root, base="main").findings] == ["breaking-change"]


def test_primary_key_change_is_breaking(repo: Callable[..., Path]) -> None:
    root = repo("int64")
    write_files(root, {"teams/sales/sales.yaml": ORDERS.format(amount="int64").replace(
        "primary_key: [id]", "primary_key: [id, note]")})
    [finding] = check_model(root, base="main").findings
    assert finding.code == "breaking-change" and "primary key" in finding.message


def test_major_version_escape_turns_it_into_a_warning(repo: Callable[..., Path]) -> None:
    root = repo("int64")
    write_files(root, {"teams/sales/sales.yaml": ORDERS.format(amount="int32").replace(
        "primary_key: [id]", "primary_key: [id]\n        version: 2")})
    result = check_model(root, base="main")
    assert result.ok
    assert [(f.code, f.severity) for f in result.findings] == [("breaking-change", "warning")]
    assert "version goes from 1 to 2" in result.findings[0].message


def test_changed_teams_and_ownership(repo: Callable[..., Path], ferry: Callable[..., object]) -> None:
    root = repo("int64")
    write_files(root, {"teams/sales/sales.yaml": ORDERS.format(amount="int64") + "# touched\n"})
    result = check_model(root, base="main", author="bea@acme.example")
    assert result.changed_teams == ["sales"]
    [finding] = result.findings
    assert finding.code == "unauthorized-change" and finding.file == "teams/sales/sales.yaml"
    assert check_model(root, base="main", author="sam@acme.example").findings == []
    assert check_model(root, base="main", author="ADMIN@acme.example").findings == []
    write_files(root, {"ferry.yaml": (root / "ferry.yaml").read_text() + "# admins only\n"})
    result = check_model(root, base="main", author="sam@acme.example")
    assert [f.file for f in result.findings] == ["ferry.yaml"]
    out = ferry("check", "--model", root, "--base", "main", "--author", "sam@acme.example")
    assert out.code == 1 and "teams changed: sales" in out.out


def test_owner_cannot_grant_themselves_a_team(repo: Callable[..., Path]) -> None:
    root = repo("int64")
    text = ORDERS.format(amount="int64").replace("[sam@acme.example]", "[sam@acme.example, eve@evil.example]")
    write_files(root, {"teams/sales/sales.yaml": text})
    [finding] = check_model(root, base="main", author="eve@evil.example").findings
    assert finding.code == "unauthorized-change"


def test_bad_base_ref_is_a_usage_error(repo: Callable[..., Path], ferry: Callable[..., object]) -> None:
    root = repo("int64")
    out = ferry("check", "--model", root, "--base", "no-such-branch")
    assert out.code == 2 and "no such git ref" in out.err


def test_model_in_a_subdirectory_of_the_repo(tmp_path: Path) -> None:
    repo_root = tmp_path / "repo"
    root = write_files(repo_root / "model", {
        "ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
        "teams/sales/sales.yaml": ORDERS.format(amount="int64"),
        "teams/bi/bi.yaml": BI,
    })
    git(repo_root, "init", "-q", "-b", "main")
    git(repo_root, "add", "-A")
    git(repo_root, "commit", "-qm", "base")
    write_files(root, {"teams/sales/sales.yaml": ORDERS.format(amount="int32")})
    result = check_model(root, base="main")
    assert [f.code for f in result.findings] == ["breaking-change"]
    assert result.changed_files == ["teams/sales/sales.yaml"]
