"""The rules ``ferry check`` enforces in Python, written as JSON Schema regular expressions.

``ferry schema`` puts these into the JSON Schema so editors flag what ``ferry check``
would refuse. Each pattern may be looser than the Python check it mirrors (an editor then
misses a mistake that ``ferry check`` still reports), never stricter: the schema must not
reject a model ``ferry check`` accepts (tests/model/test_schema_agrees.py holds both to
that). Patterns use only syntax ECMA-262 and Python's ``re`` read alike (no flags, no
``\\Z``), since editors run one and the ``jsonschema`` library the other.
"""

from __future__ import annotations

from dataferry.model.types import PRIMITIVE_NAMES


def any_case(word: str) -> str:
    """``int64`` -> ``[iI][nN][tT]64``: a pattern for ``word`` in any letter case."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


def _column_type() -> str:
    """Column types as ``parse_type`` reads them: case-free keywords, free whitespace.

    Nested types (``list<...>``, ``map<...>``, ``struct<...>``) are checked only for
    their keyword: a regular expression cannot follow nesting. An unclosed
    ``decimal(12`` or ``map<string`` is allowed too, because other YAML parsers split an
    unquoted ``{type: decimal(12,2)}`` at the comma (``FLOW_TYPE_TAIL`` takes the rest).
    """
    space = r"\s*"
    names = "|".join(any_case(n) for n in sorted(PRIMITIVE_NAMES, key=lambda n: (-len(n), n)))
    number = r"[0-9]+"
    decimal = rf"{any_case('decimal')}{space}\({space}{number}{space}(?:,{space}{number}{space}\))?"
    string = rf"{any_case('string')}{space}\({space}{number}{space}\)"
    nested = rf"(?:{any_case('list')}|{any_case('map')}|{any_case('struct')}){space}<[\s\S]*"
    return rf"^{space}(?:(?:{names}|{string}|{decimal}){space}|{nested})$"


COLUMN_TYPE = _column_type()
"""A column type (``int64``, ``decimal(12,2)``, ``string(40)``, ``list<...>``...)."""

FLOW_TYPE_TAIL = r"^[^{}\[\]]*[)>]$"
"""What another YAML parser makes a key of in ``{type: decimal(12,2)}``: ``2)``."""

DURATION = r"^(?=[0-9smhdw]*[1-9])(?:[0-9]+[smhdw])+$"
"""A duration ``ferry check`` accepts: ``30s``, ``15m``, ``1h30m``, ``2w``, not zero."""

CRON = r"^\s*(?:@[A-Za-z]+|\S+(?:\s+\S+){4,6})\s*$"
"""Roughly a cron expression (croniter decides): five to seven fields, or ``@daily``."""

TRIGGER = r"^on_change$|" + CRON
"""A transformer's trigger: ``on_change`` or a cron expression."""

SECRET_REFERENCE = r"^\$\{(?:env|file):[^}]+\}$"
"""A secret given by reference: ``${env:NAME}`` or ``${file:/path}``."""

URL_WITH_PASSWORD = r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/@:]*:(?!\$\{(?:env|file):[^}/@]+\}@)[^/@]+@"
"""A URL holding a literal password (``scheme://user:password@host``); the schema says
``not`` this. A ``${env:NAME}`` reference in the password's place is allowed."""

DATASET_REFERENCE = r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$"
"""``<team>.<dataset>``."""

PYTHON_FUNCTION = r"^[^:\s]+:[^:.\s]+$"
"""``module:function`` (roughly: ``ferry check`` also checks the identifiers)."""

END = r"(?![\s\S])"
"""The end of the text in ECMA-262 and Python alike (Python's ``$`` also matches before a
final newline): what a ``not`` pattern must use, or it refuses more than check does."""

RELATIVE_PATH_OUTSIDE = rf"^/|(?:^|/)\.\.(?:/|{END})"
"""An absolute path or one climbing out with ``..`` (an ``sql_file`` must not be)."""

EMAIL = r"@"
"""An owner's e-mail address (``ferry check`` asks for an @ only)."""

BOOLEAN_WORD = "^(?:" + "|".join(
    [any_case(w) for w in ("yes", "no", "on", "off", "true", "false", "y", "n")]) + ")" + END
"""Words YAML 1.1 read as booleans; as a text they are a mistake where a boolean may go."""

SECRET_HEADERS = ("authorization", "x-api-key", "api-key", "x-auth-token", "cookie")
"""HTTP headers whose value is a secret (written as a reference, like a password)."""
