"""``ferry datasets`` shows how far behind its change log a CDC dataset's head was read."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dataferry.model.load import load_model
from dataferry.store.publish import publish
from dataferry.store.store import Store
from tests.conftest import write_files
from tests.store.conftest import TEAM, orders


def test_the_lag_recorded_with_the_position_is_listed(tmp_path: Path,
                                                      ferry: Callable[..., Any]) -> None:
    root = write_files(tmp_path / "model", {"ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
                                            "teams/shop/shop.yaml": TEAM})
    loaded = load_model(root)
    assert loaded.ecosystem is not None
    store = Store.for_model(root, loaded.ecosystem)
    spec = loaded.ecosystem.teams["shop"].sources["db"].datasets["orders"]
    position = {"binlog_file": "binlog.000003", "binlog_pos": 1234, "gtid": "0-1-9",
                "lag_bytes": 2048, "lag_seconds": 1.5}
    publish(store.dataset("shop.orders"), spec, orders(range(3)), keys=store.keys,
            cursor=position)
    listing = json.loads(ferry("datasets", "--model", root, "--json").out)
    lags = {d["ref"]: d["lag"] for d in listing}
    assert lags["shop.orders"] == {"seconds": 1.5, "bytes": 2048}
    assert lags["shop.events"] is None
    table = ferry("datasets", "--model", root).out
    assert "lag" in table and "1.5 s (2.0 KiB)" in table, table
