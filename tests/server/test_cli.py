"""``ferry users``, ``ferry tokens``, ``ferry audit`` and ``ferry serve`` on the shop model."""

from __future__ import annotations

import io
import json
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import PASSWORD


@pytest.fixture
def stdin(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    def feed(text: str) -> None:
        monkeypatch.setattr("sys.stdin", io.StringIO(text))

    return feed


def _add(ferry: Callable[..., Any], stdin: Callable[[str], None], root: Path, name: str,
         *args: str) -> Any:
    stdin(PASSWORD + "\n")
    return ferry("users", "add", name, "--password-stdin", "--model", root, *args)


def test_users_add_list_disable(ferry: Callable[..., Any], stdin: Callable[[str], None],
                                model_root: Path) -> None:
    result = _add(ferry, stdin, model_root, "root", "--role", "admin", "--team", "shop",
                  "--email", "root@acme.example")
    assert result.code == 0, result
    assert PASSWORD not in result.out + result.err
    assert _add(ferry, stdin, model_root, "ana", "--role", "viewer").code == 0
    listed = json.loads(ferry("users", "list", "--json", "--model", model_root).out)
    assert [(u["username"], u["role"], u["teams"]) for u in listed] == [
        ("ana", "viewer", []), ("root", "admin", ["shop"])]
    assert "password" not in json.dumps(listed)
    assert ferry("users", "disable", "ana", "--model", model_root).code == 0
    text = ferry("users", "list", "--model", model_root).out
    assert re.search(r"ana\s+viewer.*DISABLED", text)


def test_users_list_has_a_header_and_the_teams_a_user_owns_by_email(
        ferry: Callable[..., Any], stdin: Callable[[str], None], model_root: Path) -> None:
    """alice@acme.example is an owner of team shop in the model: she is its member, and the
    list says so (it showed "-" for her teams)."""
    assert _add(ferry, stdin, model_root, "alice", "--role", "member",
                "--email", "Alice@acme.example").code == 0
    assert _add(ferry, stdin, model_root, "bob", "--role", "viewer").code == 0
    lines = ferry("users", "list", "--model", model_root).out.splitlines()
    assert lines[0].split() == ["user", "role", "teams", "e-mail", "totp", "status"]
    assert re.fullmatch(r"alice\s+member\s+shop \(owner by e-mail\)\s+alice@acme.example"
                        r"\s+-\s+enabled", lines[1].rstrip()), lines
    assert re.fullmatch(r"bob\s+viewer\s+-\s+-\s+-\s+enabled", lines[2].rstrip()), lines
    listed = json.loads(ferry("users", "list", "--json", "--model", model_root).out)
    assert [(u["username"], u["teams"], u["email_teams"]) for u in listed] == [
        ("alice", [], ["shop"]), ("bob", [], [])]


@pytest.mark.parametrize(("args", "password", "message"), [
    (["--role", "boss"], PASSWORD, "not a role"),
    (["--role", "member", "--team", "nope"], PASSWORD, "no team 'nope'"),
    (["--role", "member"], "password1234", "most common"),
    (["--role", "member"], "", "stdin has no password"),
])
def test_users_add_refuses_bad_input_in_one_line(ferry: Callable[..., Any],
                                                 stdin: Callable[[str], None], model_root: Path,
                                                 args: list[str], password: str,
                                                 message: str) -> None:
    stdin(password + "\n")
    result = ferry("users", "add", "dan", "--password-stdin", "--model", model_root, *args)
    assert result.code in (1, 2) and message in result.err, result
    assert result.err.count("\n") == 1


def test_reset_password_and_totp_enroll(ferry: Callable[..., Any], stdin: Callable[[str], None],
                                        model_root: Path) -> None:
    _add(ferry, stdin, model_root, "ana", "--role", "member")
    stdin("a brand new passphrase\n")
    assert ferry("users", "reset-password", "ana", "--password-stdin",
                 "--model", model_root).code == 0
    result = ferry("users", "totp-enroll", "ana", "--model", model_root)
    assert result.code == 0, result
    assert "otpauth://totp/dataferry:ana?secret=" in result.out
    assert "█" in result.out or "▀" in result.out  # the QR code
    codes = re.findall(r"^  ([a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4})$", result.out, re.M)
    assert len(codes) == 10
    listed = json.loads(ferry("users", "list", "--json", "--model", model_root).out)
    assert listed[0]["totp_enabled"] is True


def test_tokens_create_list_revoke_and_the_audit_log(ferry: Callable[..., Any],
                                                     stdin: Callable[[str], None],
                                                     model_root: Path) -> None:
    _add(ferry, stdin, model_root, "ci", "--role", "member")
    made = ferry("tokens", "create", "--user", "ci", "--name", "nightly", "--expires", "7d",
                 "--scope", "read", "--model", model_root)
    assert made.code == 0, made
    secret = made.out.strip()
    assert secret.startswith("fy_") and "shown only now" in made.err
    listed = json.loads(ferry("tokens", "list", "--json", "--model", model_root).out)
    assert [(t["user"], t["name"], t["scopes"]) for t in listed] == [("ci", "nightly", ["read"])]
    table = ferry("tokens", "list", "--model", model_root).out.splitlines()
    assert table[0].split() == ["id", "user", "kind", "name", "expires", "last", "used",
                                "scopes"]
    assert re.match(rf"\s*{listed[0]['id']}\s+ci\s+api\s+nightly\s+\S+Z\s+never\s+read$",
                    table[1].rstrip()), table
    assert secret not in json.dumps(listed)
    assert ferry("tokens", "revoke", str(listed[0]["id"]), "--model", model_root).code == 0
    again = ferry("tokens", "revoke", str(listed[0]["id"]), "--model", model_root)
    assert again.code == 1 and "no live token" in again.err
    assert json.loads(ferry("tokens", "list", "--json", "--model", model_root).out) == []
    bad = ferry("tokens", "create", "--user", "ci", "--name", "x", "--expires", "soon",
                "--model", model_root)
    assert bad.code == 2 and "not a duration" in bad.err
    unknown = ferry("tokens", "create", "--user", "ci", "--name", "x", "--scope", "runs:trigger",
                    "--model", model_root)
    assert unknown.code == 1 and "'runs:trigger' is not a scope" in unknown.err
    assert "read, run, tokens, admin" in unknown.err
    audit = json.loads(ferry("audit", "--json", "--model", model_root).out)
    assert [e["action"] for e in audit] == ["user.add", "token.create", "token.revoke"]
    assert set(audit[0]) == {"id", "at", "actor", "action", "object", "outcome", "client_ip",
                             "detail"}
    assert audit[0]["actor"].startswith("cli")
    dumped = json.dumps(audit)
    assert PASSWORD not in dumped and secret not in dumped
    assert json.loads(ferry("audit", "--json", "--since", "1h", "--model", model_root).out)
    assert json.loads(ferry("audit", "--json", "--since", "2999-01-01",
                            "--model", model_root).out) == []
    assert ferry("audit", "--since", "yesterday", "--model", model_root).code == 2


def test_serve_explains_how_to_create_the_first_admin(ferry: Callable[..., Any],
                                                      model_root: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    started: dict[str, Any] = {}

    def fake_run(app: Any, **options: Any) -> None:
        started.update(options, app=app)

    monkeypatch.setattr("dataferry.server.app.run_server", fake_run)
    port = _free_port()
    result = ferry("serve", "--port", str(port), "--no-scheduler", "--model", model_root)
    assert result.code == 0, result
    assert "ferry users add NAME --role admin" in result.err
    assert (started["host"], started["port"]) == ("127.0.0.1", port)
    assert "/api/v1/auth/login" in started["app"].openapi()["paths"]
    assert started["proxy_headers"] is False  # no X-Forwarded-For believed by default


@pytest.mark.parametrize(("args", "message"), [
    (["--forwarded-allow-ips", "127.0.0.1,proxy.local"], "'proxy.local' is not an IP address"),
    (["--max-body-size", "1MB"], "--max-body-size: '1MB' is not a size"),
    (["--max-body-size", "0"], "--max-body-size: '0' is not a size"),
])
def test_serve_checks_its_limits_flags_in_one_line(ferry: Callable[..., Any], model_root: Path,
                                                   args: list[str], message: str) -> None:
    result = ferry("serve", "--port", str(_free_port()), "--no-scheduler",
                   "--model", model_root, *args)
    assert result.code == 2 and message in result.err, result
    assert result.err.count("\n") == 1


def test_serve_on_a_port_in_use_says_so_in_one_line(ferry: Callable[..., Any],
                                                    model_root: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = ferry("serve", "--port", str(port), "--no-scheduler", "--model", model_root)
    assert result.code == 1, result
    assert f"cannot listen on 127.0.0.1:{port}" in result.err
    assert "another --port" in result.err and "Traceback" not in result.err
    bad = ferry("serve", "--host", "no-such-host.invalid", "--model", model_root)
    assert bad.code == 2 and "--host no-such-host.invalid" in bad.err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
