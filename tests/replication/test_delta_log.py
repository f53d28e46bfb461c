"""A clone's Delta log reads with a raw Delta reader: a clone of a store whose oldest
versions ``ferry gc`` dropped fills the log below its first signed commit (a base commit
of the checkpoint's files, and gap commits), which ``ferry verify`` accepts, and nothing
else in their place."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from deltalake import DeltaTable, QueryBuilder

from dataferry.store.gc import collect
from tests.replication.conftest import Origin, Ran, orders, serve_store
from tests.store.conftest import publish_computed


def _count(path: Path, version: int | None = None) -> int:
    table = DeltaTable(path, version=version)
    counted = QueryBuilder().register("t", table).execute("select count(*) as n from t")
    return int(counted.read_all().column("n")[0].as_py())


def test_a_clone_from_a_gc_checkpoint_reads_in_deltalake_as_in_ferry(
        origin: Origin, cli: Callable[..., Ran], tmp_path: Path) -> None:
    origin.publish(orders(4001, 10))
    origin.publish(orders(10, 5).set_column(2, "amount", [[-2.0] * 5]), "merge")
    collect(origin.dataset, origin.context.store.keys, keep=2)  # versions 3 and 4 stay
    clone = tmp_path / "clone"
    with serve_store(origin.context.store.root, "--anonymous") as peer:
        assert cli("clone", f"{peer.url}/shop.orders", clone).code == 0
        here = clone / "shop" / "orders"
        for number in (3, 4):
            shown = cli("show", f"shop.orders@{number}", "--store", clone, "--json")
            assert shown.code == 0, shown
            delta = origin.dataset.version(number).manifest.delta_commit["version"]
            assert _count(here, int(delta)) == json.loads(shown.out)["rows_total"], number
        assert _count(here) == _count(origin.dataset.path) == 4010
        # a pull goes on from there (no filler needed between consecutive commits)
        origin.publish(orders(5001, 7))
        assert cli("pull", clone).code == 0
    assert _count(here) == 4017
    verified = cli("verify", "--store", clone)
    assert verified.code == 0, verified
    # verify accepts exactly the fillers: one that changes the table is caught
    log = here / "_delta_log"
    gap, base = log / f"{1:020d}.json", log / f"{0:020d}.json"
    assert b"dataferry replication gap" in gap.read_bytes()
    assert b"dataferry replication base" in base.read_bytes()
    added = json.loads(base.read_bytes().splitlines()[-1])
    gap.write_bytes(gap.read_bytes() + json.dumps(added).encode() + b"\n")
    caught = cli("verify", "--store", clone)
    assert caught.code == 1 and "not a replication filler" in caught.out, caught
    gap.write_bytes(gap.read_bytes().splitlines(keepends=True)[0])
    assert cli("verify", "--store", clone).code == 0
    base.write_bytes(b"".join(base.read_bytes().splitlines(keepends=True)[:-1]))
    caught = cli("verify", "--store", clone)
    assert caught.code == 1 and "adds other files than the signed checkpoint" in caught.out


def test_versions_that_change_no_file_clone_and_verify_in_both_forms(
        origin: Origin, cli: Callable[..., Ran], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A transformer's version with new inputs and the same rows changes no file: stores
    written before December 2026 name the predecessor's Delta commit for it, now it has a
    commit of its own. A clone and a pull carry both forms, and the clone verifies."""
    from dataferry.store import publish as publishing

    spec = origin.context.index.datasets["shop.orders"].spec
    same = origin.dataset.reader(origin.dataset.resolve(None)).read_all()

    def computed(inputs: int) -> int:
        return int(publish_computed(origin.dataset, spec, same, origin.context.store.keys,
                                    inputs, mode="merge").version)

    with monkeypatch.context() as old:
        old.setattr(publishing, "_commit_nothing", lambda dataset, written, *_: written)
        assert computed(1) == 3  # the old form
    commits = [origin.dataset.version(n).manifest.delta_commit["version"] for n in (2, 3)]
    assert commits[0] == commits[1]
    clone = tmp_path / "clone"
    with serve_store(origin.context.store.root, "--anonymous") as peer:
        assert cli("clone", f"{peer.url}/shop.orders", clone).code == 0
        assert computed(2) == 4  # the new form, pulled
        assert origin.dataset.version(4).manifest.delta_commit["version"] == commits[1] + 1
        pulled = cli("pull", clone)
        assert pulled.code == 0, pulled
    verified = cli("verify", "--store", clone)
    assert verified.code == 0, verified
    here = clone / "shop" / "orders"
    assert _count(here) == _count(origin.dataset.path) == 4000
    for number in (2, 3, 4):
        shown = cli("show", f"shop.orders@{number}", "--store", clone, "--json")
        assert shown.code == 0 and json.loads(shown.out)["rows_total"] == 4000, shown
