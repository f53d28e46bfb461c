"""A peer that flips a byte, truncates a file, forges or re-signs a manifest, rolls its
head back or serves a fork is named in one line (exit 1); the clone keeps what it had,
verified, and the next pull from the honest origin succeeds."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dataferry.store.manifest import Manifest, Signature
from tests.replication.conftest import Origin, Ran, orders
from tests.replication.tamper import (
    flip_a_byte,
    lying_peer,
    on_data_files,
    on_manifests,
)


def _newest(page: dict[str, Any]) -> tuple[dict[str, Any], Manifest]:
    item = page["manifests"][-1]
    return item, Manifest.from_bytes(item["manifest"].encode())


def _forge(page: dict[str, Any]) -> None:
    item, _ = _newest(page)
    item["manifest"] = item["manifest"].replace('"mode":"append"', '"mode":"replace"')


def _resign(page: dict[str, Any]) -> None:
    item, _ = _newest(page)
    stranger = Signature.create(Ed25519PrivateKey.generate(), item["manifest"].encode())
    item["signature"] = stranger.to_bytes().decode()


def _withhold(page: dict[str, Any]) -> None:
    page["manifests"] = [m for m in page["manifests"] if m["version"] < 3]


def test_each_lie_is_caught_in_one_line_and_the_honest_pull_then_succeeds(
        origin: Origin, cli: Callable[..., Ran], tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    token = {"FERRY_TOKEN": origin.tokens["olga"]}
    with origin.served() as hub, lying_peer(hub.url) as liar:
        assert cli("clone", f"{hub.url}/shop.orders", clone, env=token).code == 0
        origin.publish(orders(5001, 2000))  # version 3, which the liar now tampers with
        lies = [
            (on_data_files(lambda body: body[: len(body) // 2]), "truncated"),
            (on_data_files(flip_a_byte), "do not match its signed hash (a changed byte)"),
            (on_manifests(_forge), "forged manifest for version 3: its signature does not"),
            (on_manifests(_resign), "signed by key SHA256:"),
            (on_manifests(_withhold), "says its head is version 3 but sent manifests only up "
             "to version 2"),
        ]
        for tamper, reason in lies:
            liar.tamper = tamper
            lied = cli("clone", f"{liar.url}/shop.orders", clone, env=token)
            assert lied.code == 1, (reason, lied)
            assert lied.err.startswith(f"error: peer {liar.url} ") and reason in lied.err, lied
            assert lied.err.count("\n") == 1 and "Traceback" not in lied.err
            assert "keeps version 2 here, verified" in lied.err
            assert cli("verify", "--store", clone).code == 0
        pulled = cli("pull", clone, "--json", env=token)
        assert pulled.code == 0, pulled
        assert json.loads(pulled.out)[0]["versions"] == [3]

        # Now the clone holds version 3: a peer that hides it, or signs another one, lies.
        def hide(page: dict[str, Any]) -> None:
            page["manifests"] = [m for m in page["manifests"] if m["version"] < 3]
            page["head"] = 2

        def fork(page: dict[str, Any]) -> None:  # a second version 3, signed with the real key
            item, manifest = _newest(page)
            raw = item["manifest"].replace(manifest.created_at, "2020-01-01T00:00:00.000000Z")
            key = origin.context.store.keys.signing_key("shop", create=False)
            item["manifest"] = raw
            item["signature"] = Signature.create(key, raw.encode()).to_bytes().decode()

        for tamper, reason in [(on_manifests(hide), "is rolled back: its head is version 2, "
                                "but version 3 is verified here already"),
                               (on_manifests(fork), "serves a fork: another signed manifest "
                                "for version 3")]:
            liar.tamper = tamper
            lied = cli("clone", f"{liar.url}/shop.orders", clone, env=token)
            assert lied.code == 1 and reason in lied.err, lied
            assert lied.err.count("\n") == 1
    assert cli("verify", "--store", clone).code == 0
    logged = json.loads(cli("log", "shop.orders", "--store", clone, "--json").out)
    assert max(v["version"] for v in logged) == 3
