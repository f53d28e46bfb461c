"""The store commands as a user runs them, with the --json shapes of CLI.md."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import write_files
from tests.store.conftest import TEAM


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_files(tmp_path / "model", {
        "ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
        "teams/shop/shop.yaml": TEAM,
        "v1.csv": "id,customer,amount,at\n1,ann,10.50,2026-01-01T10:00:00Z\n2,bob,3.00,2026-01-02T11:00:00+02:00\n",
        "v2.jsonl": '{"id": 2, "customer": "bob", "amount": "4.00", "at": "2026-02-01T00:00:00Z"}\n'
                    '{"id": 3, "customer": "cy", "amount": "1.25", "at": null}\n',
    })


def test_publish_log_show_diff_export(root: Path, ferry: Callable[..., object], tmp_path: Path) -> None:
    m = ["--model", str(root)]
    first = ferry("publish", "shop.orders", root / "v1.csv", *m)
    assert first.code == 0, first
    assert "published shop.orders version 1: 2 rows" in first.out
    second = ferry("publish", "shop.orders", root / "v2.jsonl", "--mode", "merge", *m)
    assert second.code == 0, second

    listing = json.loads(ferry("datasets", *m, "--json").out)
    orders = next(d for d in listing if d["ref"] == "shop.orders")
    assert orders["version"] == 2 and orders["rows"] == 3 and orders["owner"] == "alice@acme.example"
    assert set(orders) >= {"ref", "version", "rows", "bytes", "updated_at", "owner"}
    assert next(d for d in listing if d["ref"] == "shop.events")["version"] is None

    log = json.loads(ferry("log", "shop.orders", *m, "--json").out)
    assert [e["version"] for e in log] == [2, 1]
    assert set(log[0]) >= {"version", "created_at", "rows", "files", "added", "removed",
                           "manifest_hash", "signer"}
    assert (log[0]["added"], log[0]["removed"]) == (2, 1)

    show = json.loads(ferry("show", "shop.orders@1", *m, "--json", "--limit", "5").out)
    assert show["ref"] == "shop.orders" and show["version"] == 1 and show["rows_total"] == 2
    assert show["schema"][2] == {"name": "amount", "type": "decimal(12,2)", "nullable": True}
    assert show["rows"][1] == {"id": 2, "customer": "bob", "amount": "3.00",
                               "at": "2026-01-02T09:00:00+00:00"}
    latest = json.loads(ferry("show", "shop.orders", *m, "--json").out)
    assert latest["version"] == 2 and latest["rows_total"] == 3

    diff = json.loads(ferry("diff", "shop.orders", "1", "2", *m, "--json").out)
    assert (diff["from"], diff["to"], diff["added"], diff["removed"], diff["changed"]) == (1, 2, 1, 0, 1)
    assert {"change": "added", "key": {"id": 3}} in diff["rows"]

    for suffix in ("parquet", "csv", "jsonl"):
        out = tmp_path / f"orders.{suffix}"
        done = ferry("export", "shop.orders@1", out, *m)
        assert done.code == 0 and "wrote 2 rows" in done.out
    assert pq.read_table(tmp_path / "orders.parquet").num_rows == 2
    assert (tmp_path / "orders.csv").read_text().splitlines()[0] == '"id","customer","amount","at"'
    first_line = json.loads((tmp_path / "orders.jsonl").read_text().splitlines()[0])
    assert first_line["amount"] == "10.50"

    assert ferry("verify", *m).code == 0
    keys = json.loads(ferry("keys", *m, "--json").out)
    assert keys[0]["team"] == "shop" and keys[0]["fingerprint"].startswith("SHA256:")
    assert "PRIVATE" not in ferry("keys", *m).out


def test_clear_errors(root: Path, ferry: Callable[..., object]) -> None:
    m = ["--model", str(root)]
    unknown = ferry("publish", "shop.ordrs", root / "v1.csv", *m)
    assert unknown.code == 2 and "did you mean 'shop.orders'" in unknown.err
    missing = ferry("publish", "shop.orders", root / "nope.csv", *m)
    assert missing.code == 2 and "does not exist" in missing.err
    kind = ferry("publish", "shop.orders", root / "ferry.yaml", *m)
    assert kind.code == 2 and "unknown file type" in kind.err
    empty = ferry("log", "shop.orders", *m)
    assert empty.code == 1 and "no versions in the store yet" in empty.err
    ferry("publish", "shop.orders", root / "v1.csv", *m)
    nine = ferry("show", "shop.orders@9", *m)
    assert nine.code == 1 and "no version 9 (versions: 1..1)" in nine.err
    bad = ferry("show", "shop.orders@x", *m)
    assert bad.code == 2
    write_files(root, {"bad.csv": "id,customer,amount,at\n1,a,not-a-number,\n"})
    rejected = ferry("publish", "shop.orders", root / "bad.csv", *m)
    assert rejected.code == 1 and "amount" in rejected.err and "Traceback" not in rejected.err
    dup = write_files(root, {"dup.csv": "id,customer,amount,at\n5,a,1,\n5,b,2,\n"})
    failed = ferry("publish", "shop.orders", dup / "dup.csv", "--mode", "append", *m)
    assert failed.code == 1 and "unique" in failed.err
    assert json.loads(ferry("log", "shop.orders", *m, "--json").out)[0]["version"] == 1


def test_verify_a_copied_store_without_the_model(root: Path, ferry: Callable[..., object],
                                                 tmp_path: Path) -> None:
    import shutil

    ferry("publish", "shop.orders", root / "v1.csv", "--model", str(root))
    copy = tmp_path / "copy"
    shutil.copytree(root / ".ferry" / "store", copy)
    out = ferry("verify", "--store", copy, "--json")
    assert out.code == 0 and json.loads(out.out)["checked_files"] == 1
    assert ferry("show", "shop.orders", "--store", copy, "--json").code == 0


def test_gc_uses_the_models_retention(root: Path, ferry: Callable[..., object]) -> None:
    text = (root / "teams" / "shop" / "shop.yaml").read_text().replace(
        "      orders:\n        table: orders\n", "      orders:\n        table: orders\n        retention: 2\n")
    (root / "teams" / "shop" / "shop.yaml").write_text(text)
    m = ["--model", str(root)]
    for name in ("v1.csv", "v2.jsonl", "v1.csv", "v2.jsonl"):  # each differs from the last
        assert ferry("publish", "shop.orders", root / name, *m).code == 0
    out = ferry("gc", *m, "--json")
    assert out.code == 0
    [result] = [r for r in json.loads(out.out) if r["ref"] == "shop.orders"]
    assert result["dropped_versions"] == [1, 2] and len(result["deleted_files"]) == 2
    assert [e["version"] for e in json.loads(ferry("log", "shop.orders", *m, "--json").out)] == [4, 3]
    assert ferry("verify", *m).code == 0
    assert "dropped versions 3..3" in ferry("gc", *m, "--keep", "1").out


def test_show_and_export_times_python_cannot_hold(root: Path, ferry: Callable[..., object],
                                                  tmp_path: Path) -> None:
    """Year 12000 and 250 BC: ingest and delivery keep them; show and export did an
    OverflowError. They come out as ISO text (a sign and more than four digits)."""
    import pyarrow as pa

    table = pa.table({
        "id": pa.array([1, 2, 3], pa.int64()), "customer": ["far", "old", "now"],
        "amount": pa.array(["1.00", "2.00", "3.00"]).cast(pa.decimal128(12, 2)),
        "at": pa.array([315537897600000000, -70000000000000000, 1767225600000000],
                       pa.timestamp("us", tz="UTC"))})
    pq.write_table(table, tmp_path / "far.parquet")
    m = ["--model", str(root)]
    published = ferry("publish", "shop.orders", tmp_path / "far.parquet", *m)
    assert published.code == 0, published
    shown = ferry("show", "shop.orders", "--json", *m)
    assert shown.code == 0, shown
    at = {row["id"]: row["at"] for row in json.loads(shown.out)["rows"]}
    assert at[1].startswith("11968-12-31T00:00:00") and at[2].startswith("-0249-10-15T19:33:20")
    assert at[3] == "2026-01-01T00:00:00+00:00"  # in range: as before
    assert ferry("show", "shop.orders", *m).code == 0
    for name in ("out.jsonl", "out.csv", "out.parquet"):
        exported = ferry("export", "shop.orders", tmp_path / name, *m)
        assert exported.code == 0, exported
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(line["at"][:6] for line in lines) == ["-0249-", "11968-", "2026-0"]


def test_a_header_only_csv_does_not_wipe_a_dataset(root: Path, ferry: Callable[..., object]) -> None:
    m = ["--model", str(root)]
    assert ferry("publish", "shop.orders", root / "v1.csv", *m).code == 0
    empty = write_files(root, {"empty.csv": "id,customer,amount,at\n"}) / "empty.csv"
    refused = ferry("publish", "shop.orders", empty, *m)
    assert refused.code == 1 and refused.err.count("\n") == 1, refused
    assert "would remove 2 of 2 rows (100%: 2 rows before, 0 after)" in refused.err
    assert "max_delete_ratio of 0.5" in refused.err and "--allow-delete" in refused.err
    assert [e["version"] for e in json.loads(ferry("log", "shop.orders", *m, "--json").out)] == [1]
    allowed = ferry("publish", "shop.orders", empty, "--allow-delete", *m)
    assert allowed.code == 0 and "version 2: 0 rows" in allowed.out


def test_max_delete_ratio_is_set_in_the_model(root: Path, ferry: Callable[..., object]) -> None:
    m = ["--model", str(root)]
    one = write_files(root, {"one.csv": "id,customer,amount,at\n1,ann,10.50,\n"}) / "one.csv"
    assert ferry("publish", "shop.orders", root / "v1.csv", *m).code == 0
    (root / "ferry.yaml").write_text("ecosystem: acme\nzones: {eu: {}}\n"
                                     "defaults: {max_delete_ratio: 0.25}\n")
    refused = ferry("publish", "shop.orders", one, *m)
    assert refused.code == 1 and "max_delete_ratio of 0.25" in refused.err
    text = (root / "teams" / "shop" / "shop.yaml").read_text().replace(
        "        table: orders\n", "        table: orders\n        max_delete_ratio: 0.5\n", 1)
    (root / "teams" / "shop" / "shop.yaml").write_text(text)
    assert ferry("publish", "shop.orders", one, *m).code == 0  # the dataset's own wins
