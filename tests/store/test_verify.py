"""`ferry verify` finds every kind of damage STORE.md lists, each on its own."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dataferry.store.dataset import DatasetStore
from dataferry.store.manifest import Signature, canonical
from dataferry.store.verify import VerifyReport, verify_dataset
from tests.store.conftest import StoreFixture, orders


def published(shop: StoreFixture) -> DatasetStore:
    shop.publish("shop.orders", orders(range(1, 50)))
    shop.publish("shop.orders", orders(range(50, 60)), mode="append")
    shop.publish("shop.orders", orders(range(60, 70)), mode="append")
    return shop.dataset("shop.orders")


def problems(dataset: DatasetStore, **options: object) -> list[tuple[int | None, str | None, str]]:
    report = VerifyReport()
    verify_dataset(dataset, report, **options)  # type: ignore[arg-type]
    return [(p.version, p.file, p.problem) for p in report.problems]


def data_file(dataset: DatasetStore, version: int) -> Path:
    return dataset.path / dataset.version(version).manifest.files[0].path


def flip_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def resign(dataset: DatasetStore, version: int, edit: Callable[[dict[str, object]], None],
           key: Ed25519PrivateKey | None = None) -> None:
    manifest = json.loads(dataset.manifest_path(version).read_bytes())
    edit(manifest)
    raw = canonical(manifest)
    dataset.manifest_path(version).write_bytes(raw)
    if key is not None:
        dataset.signature_path(version).write_bytes(Signature.create(key, raw).to_bytes())


def test_an_intact_store_verifies(shop: StoreFixture) -> None:
    dataset = published(shop)
    assert problems(dataset) == []
    assert problems(dataset, deep=True) == []
    assert problems(dataset, pinned_id=dataset.genesis().dataset_id) == []


def test_flipped_byte(shop: StoreFixture) -> None:
    dataset = published(shop)
    target = data_file(dataset, 2)
    flip_byte(target)
    [(version, file, problem)] = problems(dataset)
    assert (version, file) == (2, target.name) and "does not match its hash" in problem


def test_truncated_file(shop: StoreFixture) -> None:
    dataset = published(shop)
    target = data_file(dataset, 1)
    target.write_bytes(target.read_bytes()[:-10])
    [(version, file, problem)] = problems(dataset)
    assert (version, file) == (1, target.name) and "truncated" in problem


def test_missing_file(shop: StoreFixture) -> None:
    dataset = published(shop)
    target = data_file(dataset, 3)
    target.unlink()
    [(version, file, problem)] = problems(dataset)
    assert (version, file, problem) == (3, target.name, "file is missing")


def test_edited_manifest(shop: StoreFixture) -> None:
    dataset = published(shop)

    def more_rows(manifest: dict[str, object]) -> None:
        manifest["rows"] = 1_000_000

    resign(dataset, 2, more_rows)
    found = problems(dataset)
    assert any(v == 2 and "bad signature" in p for v, _, p in found)
    assert any(v == 3 and "broken chain" in p for v, _, p in found)  # 3's prev names the old 2


def test_bad_signature(shop: StoreFixture) -> None:
    dataset = published(shop)
    sig = json.loads(dataset.signature_path(1).read_bytes())
    forged = bytearray(__import__("base64").b64decode(sig["signature"]))
    forged[0] ^= 0xFF
    sig["signature"] = __import__("base64").b64encode(bytes(forged)).decode()
    dataset.signature_path(1).write_bytes(canonical(sig))
    [(version, _, problem)] = problems(dataset)
    assert version == 1 and "bad signature" in problem


def test_broken_prev_link(shop: StoreFixture) -> None:
    dataset = published(shop)
    key = shop.store.keys.signing_key("shop")

    def unlink(manifest: dict[str, object]) -> None:
        manifest["prev"] = "00" * 32

    resign(dataset, 3, unlink, key)  # validly signed, but it no longer chains to 2
    [(version, _, problem)] = problems(dataset)
    assert version == 3 and "broken chain" in problem


def test_signed_by_a_key_the_genesis_does_not_allow(shop: StoreFixture) -> None:
    dataset = published(shop)
    intruder = Ed25519PrivateKey.generate()
    resign(dataset, 3, lambda manifest: None, intruder)
    [(version, _, problem)] = problems(dataset)
    assert version == 3 and "genesis does not allow" in problem


def test_delta_log_edited_to_add_a_file(shop: StoreFixture) -> None:
    dataset = published(shop)
    head = dataset.version(3).manifest
    log = dataset.path / "_delta_log" / f"{head.delta_commit['version']:020d}.json"
    extra = dict(json.loads(next(line for line in log.read_text().splitlines() if '"add"' in line)))
    extra["add"] = {**extra["add"], "path": "part-smuggled.parquet"}
    log.write_text(log.read_text().rstrip("\n") + "\n" + json.dumps(extra) + "\n")
    found = problems(dataset)
    assert any(v == 3 and "Delta commit was changed" in p for v, _, p in found)
    assert any(v == 3 and "part-smuggled.parquet" in p for v, _, p in found)


def test_genesis_swapped_for_another(shop: StoreFixture) -> None:
    dataset = published(shop)
    pinned = dataset.genesis().dataset_id
    genesis = json.loads(dataset.genesis_path.read_bytes())
    genesis["keys"] = [Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex()]
    dataset.genesis_path.write_bytes(canonical(genesis))
    dataset._genesis = None
    found = problems(dataset, pinned_id=pinned)
    assert any("pinned dataset id" in p for _, _, p in found)
    assert any("genesis does not allow" in p or "another dataset" in p for _, _, p in found)


def test_missing_version_is_a_gap(shop: StoreFixture) -> None:
    dataset = published(shop)
    dataset.manifest_path(2).unlink()
    dataset.signature_path(2).unlink()
    found = problems(dataset)
    assert any(v == 3 and "version 2 is missing" in p for v, _, p in found)


def test_chunk_list_tampering(shop: StoreFixture) -> None:
    dataset = published(shop)
    entry = dataset.version(1).manifest.files[0]
    dataset.chunks_path(entry.hash).write_text("00\n")
    [(version, _, problem)] = problems(dataset)
    assert version == 1 and "chunk list" in problem


@pytest.mark.parametrize("as_json", [True, False])
def test_cli_verify_exit_codes(shop: StoreFixture, ferry: Callable[..., object], as_json: bool) -> None:
    dataset = published(shop)
    args = ["verify", "--model", str(shop.root), *(["--json"] if as_json else [])]
    ok = ferry(*args)
    assert ok.code == 0
    flip_byte(data_file(dataset, 1))
    bad = ferry(*args)
    assert bad.code == 1
    if as_json:
        payload = json.loads(bad.out)
        assert payload["ok"] is False and payload["checked_files"] == 3
        [entry] = payload["problems"]
        assert entry["dataset"] == "shop.orders" and entry["version"] == 1
        assert entry["file"] == data_file(dataset, 1).name and entry["problem"]
    else:
        assert "shop.orders@1" in bad.out and "FAILED" in bad.out
