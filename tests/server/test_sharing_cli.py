"""``ferry share create|list|revoke``: profile files, hashed tokens, audit entries."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from dataferry.engine.context import RunContext
from dataferry.sharing.tokens import ShareTokens
from tests.conftest import FakeClock


def test_create_writes_a_profile_whose_token_is_kept_hashed_and_revoke_ends_it(
        ferry: Callable[..., Any], model_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "partner" / "mirror.share"
    made = ferry("share", "create", "shop.mirror", "--endpoint", "https://ferry.example.com/",
                 "--out", out, "--expires", "30d", "--model", model_root)
    assert made.code == 0, made
    content = json.loads(out.read_text())
    assert content["shareCredentialsVersion"] == 1
    assert content["endpoint"] == "https://ferry.example.com/delta-sharing"
    assert content["bearerToken"].startswith("fy_")
    assert content["expirationTime"].endswith("Z")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert content["bearerToken"] not in made.out + made.err

    listed = json.loads(ferry("share", "list", "--json", "--model", model_root).out)
    assert [t["consumer"] for t in listed] == ["shop.mirror"]
    assert content["bearerToken"] not in json.dumps(listed)
    db_file = model_root / ".ferry" / "ferry.db"
    if db_file.exists():  # the SQLite metadata DB: the token is nowhere in it
        assert content["bearerToken"].encode() not in db_file.read_bytes()

    assert ferry("share", "revoke", "shop.mirror", "--model", model_root).code == 0
    assert json.loads(ferry("share", "list", "--json", "--model", model_root).out) == []
    again = ferry("share", "revoke", "shop.mirror", "--model", model_root)
    assert again.code == 2 and "no live share token" in again.err
    audit = ferry("audit", "--json", "--model", model_root)
    actions = [e["action"] for e in json.loads(audit.out)]
    assert "share.create" in actions and "share.revoke" in actions


def test_create_names_the_consumers_when_the_one_given_is_unknown(
        ferry: Callable[..., Any], model_root: Path) -> None:
    result = ferry("share", "create", "shop.nobody", "--endpoint", "https://x.example",
                   "--model", model_root)
    assert result.code == 2
    assert "no consumer 'shop.nobody'" in result.err and "shop.mirror" in result.err
    bad = ferry("share", "create", "shop.mirror", "--endpoint", "ftp://x", "--model", model_root)
    assert bad.code == 2 and "not an http(s) URL" in bad.err


def test_a_revoked_token_is_found_no_more(context: RunContext) -> None:
    tokens = ShareTokens(context.metadata)
    issued = tokens.create("shop.mirror", timedelta(days=1), actor="test")
    assert tokens.find_live(issued.secret) is not None
    assert tokens.find_live(issued.secret + "x") is None
    assert tokens.revoke("shop.mirror", actor="test") == 1
    assert tokens.find_live(issued.secret) is None


def test_an_expired_token_is_found_no_more(context: RunContext, clock: FakeClock) -> None:
    tokens = ShareTokens(context.metadata, clock)
    issued = tokens.create("shop.mirror", timedelta(days=1), actor="test")
    clock.advance(23 * 3600)
    assert tokens.find_live(issued.secret) is not None
    clock.advance(2 * 3600)
    assert tokens.find_live(issued.secret) is None
    assert tokens.list() == [] and len(tokens.list(include_dead=True)) == 1
