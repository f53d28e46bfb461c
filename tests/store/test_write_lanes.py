"""Row groups encoded on two lanes: the files hold exactly the rows given, hash their bytes
and verify in the store, and a failure anywhere leaves no file and no thread behind."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataferry.errors import StoreError
from dataferry.store import parquet_files
from dataferry.store.hashing import hash_file
from dataferry.store.lanes import Lanes
from dataferry.store.parquet_files import write_files, write_lanes
from dataferry.store.verify import VerifyReport, verify_dataset
from tests.store.conftest import StoreFixture, orders

GROUP = 500
SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()),
                    ("tags", pa.list_(pa.string())), ("at", pa.timestamp("s"))])


@pytest.fixture(autouse=True)
def two_lanes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parquet_files, "ROW_GROUP_ROWS", GROUP)
    monkeypatch.setenv("FERRY_WRITE_LANES", "2")


def batch(start: int, rows: int) -> pa.RecordBatch:
    ids = range(start, start + rows)
    return pa.record_batch([
        pa.array(ids, pa.int64()),
        pa.array([f"name {i % 13}" if i % 5 else None for i in ids]),
        pa.array([[f"t{i}", f"u{i % 3}"] for i in ids], pa.list_(pa.string())),
        pa.array([i * 60 for i in ids], pa.timestamp("s")),
    ], schema=SCHEMA)


def stream(sizes: list[int]) -> Iterator[pa.RecordBatch]:
    start = 0
    for size in sizes:
        yield batch(start, size)
        start += size


def rows_of(directory: Path, written: list[tuple[parquet_files.FileEntry, object]]) -> Counter[tuple[object, ...]]:
    rows: Counter[tuple[object, ...]] = Counter()
    for entry, _ in written:
        table = pq.read_table(directory / entry.path)
        assert table.num_rows == entry.rows
        rows.update(as_rows(table))
    return rows


def as_rows(table: pa.Table) -> list[tuple[object, ...]]:
    """Rows as hashable tuples (a list value as a tuple)."""
    return [tuple(tuple(v) if isinstance(v, list) else v for v in row.values())
            for row in table.to_pylist()]


def writers_alive() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("ferry-write")]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(min_value=0, max_value=1500), max_size=30))
def test_the_files_of_two_lanes_hold_exactly_the_rows_given(sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        seen: list[int] = []
        written = write_files(directory, pa.RecordBatchReader.from_batches(
            SCHEMA, stream(sizes)), "blake3", seen.append)
        table = pa.Table.from_batches(list(stream(sizes)), SCHEMA)
        expected = Counter(as_rows(table))
        assert rows_of(directory, written) == expected
        assert sum(seen) == sum(sizes)
        assert sorted(p.name for p in directory.iterdir()) == sorted(e.path for e, _ in written)
        for entry, digest in written:
            assert hash_file(directory / entry.path, "blake3") == digest
            assert (entry.size, entry.hash) == (digest.size, digest.hash)
        if sum(sizes) <= GROUP:  # one row group: one file, as with one lane
            assert len(written) == (1 if sum(sizes) else 0)
        assert not writers_alive()


def test_many_row_groups_use_both_lanes_and_the_store_verifies_them(shop: StoreFixture) -> None:
    rows = orders(range(40 * GROUP))
    published = shop.publish("shop.orders", pa.Table.from_batches(rows.to_batches(GROUP)))
    dataset = shop.dataset("shop.orders")
    files = dataset.active_files(published.version)
    assert len(files) > 1, "a second lane was never used"
    table = dataset.reader(dataset.resolve(None)).read_all()
    assert sorted(table["id"].to_pylist()) == list(range(40 * GROUP))
    report = VerifyReport()
    verify_dataset(dataset, report, deep=True)
    assert report.ok, report.problems


def test_files_are_listed_by_their_first_row_group(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Every row group rolls its lane to a new file: lane 0's files and lane 1's interleave."""
    monkeypatch.setattr(parquet_files, "TARGET_FILE_BYTES", 1)
    monkeypatch.setattr(parquet_files, "WRITE_BUFFER", 0)  # the sink sees every byte at once
    written = write_files(tmp_path, pa.RecordBatchReader.from_batches(
        SCHEMA, stream([GROUP] * 30)), "blake3", None)
    assert len(written) == 30
    firsts = [pq.read_table(tmp_path / e.path, columns=["id"])["id"][0].as_py() for e, _ in written]
    assert firsts == sorted(firsts) and firsts[0] == 0


def test_an_error_from_the_reader_mid_stream_leaves_no_file_and_no_thread(tmp_path: Path) -> None:
    def failing() -> Iterator[pa.RecordBatch]:
        yield from stream([GROUP] * 12)
        raise ValueError("the source went away")

    with pytest.raises(ValueError, match="the source went away"):
        write_files(tmp_path, pa.RecordBatchReader.from_batches(SCHEMA, failing()), "blake3", None)
    assert list(tmp_path.iterdir()) == []
    assert not writers_alive()


def test_an_error_in_a_lane_is_the_one_raised_and_leaves_no_file_and_no_thread(
        tmp_path: Path) -> None:
    """Row group 9 holds a time Parquet cannot store (seconds past int64 milliseconds):
    its lane fails while the other lane holds files of its own."""
    def with_bad_time() -> Iterator[pa.RecordBatch]:
        for number, good in enumerate(stream([GROUP] * 20)):
            if number == 9:
                at = pa.array([2**62] * GROUP, pa.timestamp("s"))
                good = good.set_column(3, "at", at)
            yield good

    with pytest.raises(pa.ArrowInvalid, match="overflow"):
        write_files(tmp_path, pa.RecordBatchReader.from_batches(SCHEMA, with_bad_time()),
                    "blake3", None)
    assert list(tmp_path.iterdir()) == []
    assert not writers_alive()


def test_a_full_disk_with_two_lanes_is_no_room_and_leaves_nothing(small_disk: Path) -> None:
    stats = os.statvfs(small_disk)
    (small_disk / "filler").write_bytes(b"\0" * (stats.f_bavail * stats.f_frsize - 300_000))
    directory = small_disk / "data"
    directory.mkdir()
    with pytest.raises(StoreError, match="no space left"):
        write_files(directory, pa.RecordBatchReader.from_batches(
            SCHEMA, stream([GROUP] * 400)), "blake3", None)
    assert list(directory.iterdir()) == []
    assert not writers_alive()


def test_a_lane_is_given_work_only_while_the_ones_before_it_are_busy() -> None:
    """At most one item a lane: with both busy, ``submit`` waits (what bounds memory)."""
    release = threading.Event()
    started: list[tuple[int, int]] = []
    finished: list[int] = []

    def work(lane: int, item: int) -> None:
        started.append((lane, item))
        release.wait(10)

    lanes: Lanes[int] = Lanes(2, work, finished.append, "ferry-write-test", 100)
    lanes.submit(0, 10)
    lanes.submit(1, 10)
    third = threading.Thread(target=lanes.submit, args=(2, 10))
    third.start()
    third.join(0.3)
    assert third.is_alive(), "a third item was taken while both lanes were busy"
    release.set()
    third.join(10)
    lanes.close()
    assert set(started[:2]) == {(0, 0), (1, 1)} and len(started) == 3
    assert sorted(finished) == [0, 1]
    assert not writers_alive()


def test_a_table_whose_encoding_keeps_up_makes_one_file(tmp_path: Path) -> None:
    """Row groups that come slower than lane 0 encodes them (0.1 s apart; 500 rows take
    milliseconds) all go to lane 0: one file, as with one lane."""
    def slow() -> Iterator[pa.RecordBatch]:
        for part in stream([GROUP] * 8):
            time.sleep(0.1)
            yield part

    written = write_files(tmp_path, pa.RecordBatchReader.from_batches(SCHEMA, slow()),
                          "blake3", None)
    assert len(written) == 1 and written[0][0].rows == 8 * GROUP


def test_the_budget_keeps_a_second_item_back_while_the_first_is_encoded() -> None:
    """Items of 10 bytes under a budget of 15: the second waits for the first, and the
    gathering of more than 5 bytes waits too (wide rows go one row group at a time)."""
    release = threading.Event()
    lanes: Lanes[int] = Lanes(2, lambda lane, item: release.wait(10), lambda lane: None,
                              "ferry-write-test", 15)
    lanes.submit(0, 10)
    lanes.make_room(5)  # fits beside the item in lane 0
    waiting = [threading.Thread(target=lanes.submit, args=(1, 10)),
               threading.Thread(target=lanes.make_room, args=(6,))]
    for thread in waiting:
        thread.start()
    for thread in waiting:
        thread.join(0.3)
        assert thread.is_alive(), "the budget let more in while lane 0 held 10 bytes"
    release.set()
    for thread in waiting:
        thread.join(10)
        assert not thread.is_alive()
    lanes.close()
    assert not writers_alive()


@pytest.mark.parametrize(("value", "lanes"), [("", None), ("1", 1), ("3", 3), (" 2 ", 2)])
def test_write_lanes_from_the_environment(monkeypatch: pytest.MonkeyPatch, value: str,
                                          lanes: int | None) -> None:
    monkeypatch.setenv("FERRY_WRITE_LANES", value)
    assert write_lanes() == (lanes if lanes is not None else
                             (2 if (os.cpu_count() or 1) >= 2 else 1))


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_number_of_lanes_says_what_to_set(monkeypatch: pytest.MonkeyPatch,
                                                value: str) -> None:
    monkeypatch.setenv("FERRY_WRITE_LANES", value)
    with pytest.raises(StoreError, match=r"FERRY_WRITE_LANES=.*whole number of 1 or more"):
        write_lanes()

