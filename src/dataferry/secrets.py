"""Secrets are a type: a reference (``${env:NAME}``, ``${file:/path}``) resolved at the last
moment, where the job runs, into a value whose ``repr``/``str`` never shows it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from dataferry.errors import SecretError

REFERENCE = re.compile(r"\$\{(env|file):([^}]+)\}")


class Secret:
    """A resolved secret. ``reveal()`` gives the value; printing it shows ``***``."""

    __slots__ = ("_value", "reference")

    def __init__(self, value: str, reference: str = "") -> None:
        self._value = value
        self.reference = reference

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.reference or '***'})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def resolve(reference: str | None, what: str) -> Secret | None:
    """Resolve ``${env:NAME}`` / ``${file:/path}`` (or a literal, which ``ferry check``
    reports) into a ``Secret``; ``what`` names the setting in errors (never the value)."""
    if reference is None:
        return None
    match = REFERENCE.fullmatch(reference.strip())
    if match is None:
        return Secret(reference, "literal")
    kind, name = match.groups()
    if kind == "env":
        value = os.environ.get(name)
        if value is None:
            raise SecretError(f"{what}: environment variable {name} is not set (the model "
                              f"says {reference}); set it where the job runs", public=True)
        return Secret(value, reference)
    path = Path(name).expanduser()
    try:
        return Secret(path.read_text(encoding="utf-8").rstrip("\n"), reference)
    except OSError as exc:
        raise SecretError(f"{what}: cannot read secret file {path} ({exc.strerror})",
                          public=True) from None


def redact(text: str, *secrets: Secret | None) -> str:
    """``text`` with every secret value replaced by ``***`` (for error messages and logs)."""
    for secret in secrets:
        if secret is not None and secret.reveal():
            text = text.replace(secret.reveal(), "***")
    return text
