"""Password policy and hashing, TOTP arithmetic and seed encryption: no database needed."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dataferry.errors import AuthError
from dataferry.server.auth import AuthSettings
from dataferry.server.auth.passwords import (
    Passwords,
    WeakPassword,
    check_policy,
    common_passwords,
)
from dataferry.server.auth.totp import (
    SeedBox,
    code_at,
    hash_recovery_code,
    matching_step,
    new_recovery_codes,
    new_secret,
)
from tests.server.conftest import FAST

pytestmark = pytest.mark.security


@pytest.mark.parametrize(("password", "words"), [
    ("a" * 11, "at least 12"),
    ("x" * 129, "at most 128"),
    ("Password1234", "most common"),
    ("qwertyuiop123", "most common"),
    ("the ANAGRAM plan", "user name"),  # contains "anagram"
    ("ab" * 10, "too few"),
])
def test_weak_passwords_are_refused_with_the_reason(password: str, words: str) -> None:
    with pytest.raises(WeakPassword, match=words):
        check_policy(password, "anagram")


def test_good_passwords_pass_without_composition_rules() -> None:
    check_policy("all lower case words here", "ana")
    check_policy("ü" * 3 + "long enough pass", "ana")
    check_policy("y" * 60 + "abc" + "z" * 65, "ana")  # 128 characters
    assert len(common_passwords()) > 300


def test_hashes_are_argon2id_and_upgrade_when_the_cost_changes() -> None:
    cheap, dearer = Passwords(FAST), Passwords(AuthSettings(argon2_time_cost=2,
                                                            argon2_memory_kib=8192,
                                                            argon2_parallelism=1))
    hashed = cheap.hash("some long passphrase")
    assert hashed.startswith("$argon2id$") and cheap.verify(hashed, "some long passphrase")
    assert not cheap.verify(hashed, "another") and not cheap.verify("garbage", "x")
    assert not cheap.needs_rehash(hashed) and dearer.needs_rehash(hashed)


def test_login_rehashes_a_password_made_with_old_parameters(tmp_path: Path) -> None:
    from dataferry.metadata import open_metadata
    from dataferry.server.auth import Auth

    with open_metadata(f"sqlite:///{tmp_path / 'ferry.db'}") as db:
        old = Auth(db, tmp_path, FAST)
        old.accounts.add("ana", "viewer", "some long passphrase", actor="t")
        before = old.accounts.get("ana").password_hash
        new = Auth(db, tmp_path, AuthSettings(argon2_time_cost=2, argon2_memory_kib=8192,
                                              argon2_parallelism=1))
        new.login.login("ana", "some long passphrase", None, "127.0.0.1")
        after = new.accounts.get("ana").password_hash
        assert after != before and "t=2" in after


def test_codes_match_within_one_step_either_way() -> None:
    secret = new_secret()
    at = datetime(2026, 1, 1, 12, 0, 15, tzinfo=UTC)
    step = int(at.timestamp()) // 30
    for offset in (-1, 0, 1):
        code = code_at(secret, at + timedelta(seconds=30 * offset))
        assert matching_step(secret, code, at) == step + offset
    for offset in (-2, 2):
        assert matching_step(secret, code_at(secret, at + timedelta(seconds=30 * offset)),
                             at) is None
    assert matching_step(secret, "12345", at) is None and matching_step(secret, "abcdef", at) is None


def test_seeds_are_encrypted_under_a_private_key_file(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "totp.key"
    box = SeedBox(key)
    sealed = box.encrypt("JBSWY3DPEHPK3PXP", "ana")
    assert "JBSWY3DPEHPK3PXP" not in sealed
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert SeedBox(key).decrypt(sealed, "ana") == "JBSWY3DPEHPK3PXP"
    with pytest.raises(AuthError, match="does not decrypt"):
        box.decrypt(sealed, "bob")  # a seed moved onto another user's row
    key.chmod(0o644)
    with pytest.raises(AuthError, match="chmod 600"):
        SeedBox(key).decrypt(sealed, "ana")


def test_recovery_codes_are_random_and_hash_as_typed() -> None:
    codes = new_recovery_codes()
    assert len(set(codes)) == 10 and all(len(c) == 14 for c in codes)
    assert hash_recovery_code(codes[0]) == hash_recovery_code(codes[0].upper().replace("-", " "))
