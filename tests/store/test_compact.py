"""`ferry compact`: a table with deletion vectors, compacted, opens in every Delta reader."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import DeltaProtocolError

from dataferry.store.changes import change_set
from dataferry.store.compact import compact
from tests.store.conftest import StoreFixture, orders
from tests.store.test_merge_on_read import delta_rows, store_rows, verified


def merged_twice(shop: StoreFixture) -> str:
    """Three versions: 1,000 rows, then two merges that leave deletion vectors."""
    shop.publish("shop.orders", orders(range(1000)))
    shop.publish("shop.orders", orders([*range(0, 1000, 50), 2000], amount="7.00"), mode="merge")
    shop.publish("shop.orders", orders([*range(0, 1000, 75), 2001], amount="8.00"), mode="merge")
    return str(shop.dataset("shop.orders").path)


def test_a_compacted_table_opens_in_pyarrow_and_equals_ferry_show(
        shop: StoreFixture, ferry: Callable[..., Any]) -> None:
    path = merged_twice(shop)
    with pytest.raises(DeltaProtocolError, match="deletionVectors"):
        DeltaTable(path).to_pyarrow_table()
    before = store_rows(shop)

    done = ferry("compact", "shop.orders", "--model", shop.root, "--json")
    assert done.code == 0, done
    result = json.loads(done.out)
    assert (result["version"], result["rows"], result["reader_version"]) == (4, 1002, 1)
    assert result["rewritten_files"] == 2 and result["deleted_rows"] == 20 + 14

    table = DeltaTable(path)
    assert table.protocol().min_reader_version == 1
    assert "deletionVectors" not in (table.protocol().writer_features or [])
    pyarrow_rows = table.to_pyarrow_table().sort_by("id")
    shown = json.loads(ferry("show", "shop.orders", "--model", shop.root, "--json",
                             "--limit", "5000").out)
    assert shown["version"] == 4 and shown["rows_total"] == 1002
    assert pyarrow_rows.column("id").to_pylist() == sorted(r["id"] for r in shown["rows"])
    by_id = {r["id"]: Decimal(r["amount"]) for r in shown["rows"]}
    assert dict(zip(pyarrow_rows.column("id").to_pylist(),
                    pyarrow_rows.column("amount").to_pylist(), strict=True)) == by_id == before
    assert table.to_pyarrow_dataset().count_rows() == 1002

    verify = ferry("verify", "shop.orders", "--model", shop.root, "--deep")
    assert verify.code == 0, verify
    diff = json.loads(ferry("diff", "shop.orders", "3", "4", "--model", shop.root, "--json").out)
    assert (diff["added"], diff["removed"], diff["changed"]) == (0, 0, 0)
    # Old versions still time-travel (through the readers that know deletion vectors).
    assert delta_rows(shop, 2) == store_rows(shop, 3) == before
    assert len(delta_rows(shop, 1)) == 1001
    with pytest.raises(DeltaProtocolError):
        DeltaTable(path, version=2).to_pyarrow_table()


def test_compaction_is_no_data_change(shop: StoreFixture) -> None:
    merged_twice(shop)
    dataset = shop.dataset("shop.orders")
    compact(dataset, shop.store.keys)
    head = dataset.head()
    assert head is not None
    manifest = head.manifest
    assert (manifest.mode, manifest.added_rows, manifest.removed_rows) == ("compact", 0, 0)
    assert not any(f.deletion_vector for f in dataset.active_files(4))
    _, actions = dataset.delta_entry(int(manifest.delta_commit["version"]))
    files = [a.get("add") or a.get("remove") for a in actions if "add" in a or "remove" in a]
    assert files and all(f["dataChange"] is False for f in files)
    info = next(a["commitInfo"] for a in actions if "commitInfo" in a)
    assert info["operation"] == "OPTIMIZE"
    removed = sum(1 for a in actions if "remove" in a)
    assert info["operationMetrics"]["numRemovedFiles"] == str(removed)
    added = [json.loads(a["add"]["stats"]) for a in actions if "add" in a]
    assert added and all("id" in stats["minValues"] for stats in added)  # readers skip by them
    assert dataset.same_rows(3, 4) and not dataset.same_rows(2, 4)
    schema = pa.schema([("id", pa.int64()), ("amount", pa.decimal128(12, 2)),
                        ("_ferry_op", pa.string())])
    assert change_set(dataset, dataset.version(3), head, ["id", "amount"], ["id"], None,
                      schema).read_all().num_rows == 0

    again = compact(dataset, shop.store.keys)
    assert again.unchanged and again.version == 4 and dataset.head_number() == 4

    # A later merge writes deletion vectors again (and raises the protocol); compacting
    # once more opens the table again.
    shop.publish("shop.orders", orders([5, 6], amount="9.00"), mode="merge")
    path = str(dataset.path)
    assert DeltaTable(path).protocol().min_reader_version == 3
    compact(dataset, shop.store.keys)
    assert DeltaTable(path).to_pyarrow_table().num_rows == 1002 == len(store_rows(shop))
    assert verified(shop).ok


def test_a_table_without_deletion_vectors_is_left_alone(
        shop: StoreFixture, ferry: Callable[..., Any]) -> None:
    shop.publish("shop.orders", orders(range(10)))
    done = ferry("compact", "shop.orders", "--model", shop.root)
    assert done.code == 0, done
    assert "nothing to compact" in done.out
    assert shop.dataset("shop.orders").head_number() == 1
    missing = ferry("compact", "shop.events", "--model", shop.root)
    assert missing.code == 1 and "no versions" in missing.err


_READERS = """\
import json, pathlib, sys
import duckdb, duckdb_extension_delta
from deltalake import DeltaTable
extension = next(pathlib.Path(duckdb_extension_delta.__file__).parent.rglob("*.duckdb_extension"))
con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
con.execute(f"load '{extension}'")
seen = {"duckdb": con.execute("select id, amount::varchar from delta_scan(?) order by id",
                              [sys.argv[1]]).fetchall()}
try:
    frame = DeltaTable(sys.argv[1]).to_pandas()
    seen["pandas"] = sorted(zip(frame["id"].tolist(), frame["amount"].astype(str).tolist()))
except Exception as error:
    seen["pandas"] = type(error).__name__
print(json.dumps(seen))
"""
DUCKDB_DELTA = "1.5.5"


def test_outside_readers_before_and_after_compaction(shop: StoreFixture, tmp_path: Any) -> None:
    """What docs/store.md's reader table says, for the readers installable here: DuckDB's
    delta extension and pandas (through deltalake) in a venv of their own, Polars and
    deltalake's QueryBuilder here."""
    import deltalake
    import polars as pl

    from tests.outside_tools import run_tool, tool_venv

    path = merged_twice(shop)
    expected = sorted((i, str(a)) for i, a in store_rows(shop).items())
    python = tool_venv(f"delta-readers-{DUCKDB_DELTA}-{deltalake.__version__}", [
        f"duckdb=={DUCKDB_DELTA}", f"duckdb-extension-delta=={DUCKDB_DELTA}",
        f"deltalake=={deltalake.__version__}", "pyarrow", "pandas"]) / "python"
    script = tmp_path / "readers.py"
    script.write_text(_READERS)

    def polars_rows() -> list[tuple[int, str]]:
        frame = pl.read_delta(path)
        return sorted((i, str(a)) for i, a in zip(frame["id"], frame["amount"], strict=True))

    def query_rows() -> list[tuple[int, str]]:
        return sorted((i, str(a)) for i, a in delta_rows(shop).items())

    def outside() -> dict[str, Any]:
        seen = json.loads(run_tool(python, str(script), path))
        return {name: [tuple(row) for row in rows] if isinstance(rows, list) else rows
                for name, rows in seen.items()}

    assert polars_rows() == query_rows() == expected  # they apply deletion vectors
    assert outside() == {"duckdb": expected, "pandas": "DeltaProtocolError"}
    compact(shop.dataset("shop.orders"), shop.store.keys)
    assert polars_rows() == query_rows() == expected
    assert outside() == {"duckdb": expected, "pandas": expected}


def test_freshness_looks_past_a_compaction(shop: StoreFixture) -> None:
    from datetime import datetime, timedelta

    from dataferry.server import catalog

    merged_twice(shop)
    dataset = shop.dataset("shop.orders")
    merged = dataset.version(3)
    compact(dataset, shop.store.keys)
    head = dataset.head()
    assert head is not None and dataset.rows_version(head).number == 3
    later = datetime.fromisoformat(merged.manifest.created_at) + timedelta(days=2)
    detail = catalog.dataset_detail(shop.index, shop.store, None, "shop.orders", now=later)
    assert detail.latest is not None and detail.latest["version"] == 4
    assert detail.freshness["data_as_of"] == datetime.fromisoformat(
        merged.manifest.created_at).isoformat()
    assert detail.freshness["status"] == "stale"  # the compaction made the data no newer


def test_a_failed_compaction_publishes_nothing(shop: StoreFixture,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from dataferry.store import compact as module

    path = merged_twice(shop)
    dataset = shop.dataset("shop.orders")
    files = set(dataset.path.glob("*.parquet"))

    def refuse(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module.Signature, "create", refuse)
    with pytest.raises(Exception, match="no space left"):
        compact(dataset, shop.store.keys)
    monkeypatch.undo()
    assert dataset.head_number() == 3 and set(dataset.path.glob("*.parquet")) == files
    head = dataset.head()
    assert head is not None
    assert DeltaTable(path).version() == head.manifest.delta_commit["version"]
    assert verified(shop).ok
    assert compact(dataset, shop.store.keys).version == 4


def test_deltalake_writes_to_a_compacted_table(shop: StoreFixture) -> None:
    """The lowered protocol is one deltalake's own writer accepts (a replace commits
    through it), and the history stays readable."""
    path = merged_twice(shop)
    dataset = shop.dataset("shop.orders")
    compact(dataset, shop.store.keys)
    protocol = DeltaTable(path).protocol()
    assert (protocol.min_reader_version, protocol.reader_features) == (1, None)
    shop.publish("shop.orders", orders(range(600)), max_delete_ratio=None)
    assert DeltaTable(path).to_pyarrow_table().num_rows == 600 == len(store_rows(shop))
    assert len(store_rows(shop, 4)) == 1002 and verified(shop).ok


def test_only_a_key_that_signs_the_dataset_compacts_it(shop: StoreFixture) -> None:
    from dataferry.errors import StoreError

    merged_twice(shop)
    keys = shop.store.keys
    (keys.directory / "shop.ed25519").unlink()
    keys.signing_key("shop")  # another machine's key for the same team
    with pytest.raises(StoreError, match="is not one that signs"):
        compact(shop.dataset("shop.orders"), keys)
    assert shop.dataset("shop.orders").head_number() == 3
