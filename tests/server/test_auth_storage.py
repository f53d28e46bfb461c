"""The auth services against each metadata backend (SQLite and PostgreSQL): users, TOTP
steps and recovery codes used once, token liveness, failure counting, the audit log."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from dataferry.metadata import AuditLog, LoginFailures, Metadata, TokenStore, UserStore
from dataferry.server.auth import Auth
from dataferry.server.auth.ratelimit import LimitReached
from dataferry.server.auth.totp import code_at
from dataferry.server.errors import Conflict
from tests.conftest import FakeClock
from tests.server.conftest import FAST, PASSWORD


@pytest.fixture
def service(db: Metadata, tmp_path: Path, clock: FakeClock) -> Auth:
    return Auth(db, tmp_path / "home", FAST, clock)


def test_users_round_trip_with_teams(service: Auth) -> None:
    user = service.accounts.add("Ana", "member", PASSWORD, email="Ana@Acme.example",
                                teams=["shop", "crm", "shop"], actor="t")
    assert (user.username, user.email, user.teams) == ("ana", "ana@acme.example",
                                                       ("crm", "shop"))
    assert user.password_hash.startswith("$argon2id$")
    with pytest.raises(Conflict):
        service.accounts.add("ana", "viewer", PASSWORD, actor="t")
    assert [u.username for u in service.accounts.list()] == ["ana"]


def test_a_totp_step_and_a_recovery_code_are_accepted_once(service: Auth,
                                                           clock: FakeClock) -> None:
    service.accounts.add("ana", "member", PASSWORD, actor="t")
    enrollment = service.accounts.enroll_totp("ana", actor="t", confirmed=True)
    user = service.accounts.get("ana")
    assert user.totp_enabled and enrollment.secret not in (user.totp_secret_encrypted or "")
    code = code_at(enrollment.secret, clock())
    assert service.accounts.second_factor(user, code) == "totp"
    assert service.accounts.second_factor(user, code) is None
    recovery = enrollment.recovery_codes[0]
    assert service.accounts.second_factor(user, recovery) == "recovery"
    assert service.accounts.second_factor(user, recovery) is None
    assert service.users.recovery_codes_left(user.id) == 9


def test_store_level_steps_are_monotonic(db: Metadata, clock: FakeClock) -> None:
    users = UserStore(db, clock)
    user = users.add("ana", "viewer", "$argon2id$x")
    assert users.accept_totp_step(user.id, 100)
    assert not users.accept_totp_step(user.id, 100)
    assert not users.accept_totp_step(user.id, 99)
    assert users.accept_totp_step(user.id, 101)


def test_tokens_live_until_expiry_revocation_or_a_disabled_user(db: Metadata,
                                                                 clock: FakeClock) -> None:
    users, tokens = UserStore(db, clock), TokenStore(db, clock)
    user = users.add("ana", "viewer", "$argon2id$x")
    short = tokens.add(user.id, "access", "login", "a" * 64, clock() + timedelta(hours=1))
    long = tokens.add(user.id, "api", "ci", "b" * 64, clock() + timedelta(days=9), ["read"])
    assert tokens.find_live("a" * 64) is not None
    assert tokens.get(short.id).last_used_at == clock()  # type: ignore[union-attr]
    clock.advance(3600)
    assert tokens.find_live("a" * 64) is None
    assert tokens.revoke(long.id) and not tokens.revoke(long.id)
    assert tokens.find_live("b" * 64) is None
    third = tokens.add(user.id, "api", "ci2", "c" * 64, clock() + timedelta(days=1))
    assert users.disable(user.id) == 1
    assert tokens.find_live("c" * 64) is None and tokens.get(third.id).revoked_at == clock()  # type: ignore[union-attr]


def test_attempts_count_per_account_and_ip_in_a_window(db: Metadata, clock: FakeClock) -> None:
    failures = LoginFailures(db, clock)
    for _ in range(3):
        failures.record("ana", "1.1.1.1")
        clock.advance(60)
    failures.record("bob", "1.1.1.1")
    failures.forget(failures.record("ana", "1.1.1.1"))  # refused or succeeded: not counted
    failures.record("ana", "2.2.2.2")
    window = timedelta(minutes=15)
    counts = failures.counts("ana", "1.1.1.1", window)
    assert (counts.pair.count, counts.ip.count, counts.account.count) == (3, 4, 4)
    assert counts.pair.oldest == clock() - timedelta(minutes=3)
    failures.forget_pair("ana", "1.1.1.1")  # ana logged in from 1.1.1.1
    counts = failures.counts("ana", "1.1.1.1", window)
    # The IP's count stays, and so do ana's failures from elsewhere.
    assert (counts.pair.count, counts.ip.count, counts.account.count) == (0, 4, 1)
    clock.advance(15 * 60)
    assert failures.counts("ana", "1.1.1.1", window).ip.count == 0


def test_the_rate_limiter_says_when_to_retry(service: Auth, clock: FakeClock) -> None:
    for _ in range(10):
        service.limiter.begin("ana", "2.2.2.2").failed()
    clock.advance(100)
    with pytest.raises(LimitReached) as caught:
        service.limiter.begin("ana", "2.2.2.2")
    assert caught.value.retry_after == 800 and caught.value.limit == "account+ip"
    service.limiter.begin("ana", "3.3.3.3").abandoned()  # the account from elsewhere
    service.limiter.begin("bob", "2.2.2.2").abandoned()  # 10 < 50 for the IP


def test_the_audit_log_keeps_order_and_filters_by_time(db: Metadata, clock: FakeClock) -> None:
    audit = AuditLog(db, clock)
    audit.record("ana", "login", "user:ana", "failure", client_ip="::1",
                 detail={"reason": "wrong password"})
    clock.advance(3600)
    audit.record("ana", "login", "user:ana", "success", client_ip="::1")
    entries = audit.entries()
    assert [e.outcome for e in entries] == ["failure", "success"]
    assert entries[0].detail == {"reason": "wrong password"} and entries[0].client_ip == "::1"
    assert [e.outcome for e in audit.entries(since=clock() - timedelta(minutes=1))] \
        == ["success"]
