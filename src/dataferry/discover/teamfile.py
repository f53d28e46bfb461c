"""Write what discover found as a team file (YAML with comments) that ``ferry check``
accepts unchanged.

Names are made valid: a dataset is named after its table (``Order Items`` ->
``order_items``), and a column whose name the model cannot hold is renamed in a
``query:`` that selects it under the new name. Primary keys come from the catalog;
a suggested cursor, a key candidate (a unique index) and an enum's values are written
as comments to uncomment.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from dataferry.discover.live import LiveColumn, LiveSource, LiveTable
from dataferry.discover.target import name_of

_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./:@+=&?%-]*$")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}
_CURSOR_WORDS = ("updated", "modified", "changed", "lastupdate", "updatetime", "modifytime",
                 "changetime", "mtime")
_CURSOR_TYPES = ("timestamp_tz", "timestamp", "date", "int64", "int32", "uint64", "uint32")


@dataclass(frozen=True)
class Header:
    """What the file says about itself and its team."""

    team: str
    zone: str
    owner: str
    at: datetime | None = None


def scalar(text: str) -> str:
    """``text`` as a YAML scalar: plain when every YAML reader reads it back as this
    string, else double-quoted."""
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS and ": " not in text:
        return text
    if text.isprintable() and text == text.strip() and text:
        return "'" + text.replace("'", "''") + "'"
    return "".join(c if c.isprintable() else _escape(c)
                   for c in json.dumps(text, ensure_ascii=False))


def _escape(character: str) -> str:
    code = ord(character)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _flow(values: list[str] | tuple[str, ...]) -> str:
    return "[" + ", ".join(scalar(v) for v in values) + "]"


def column_names(table: LiveTable) -> dict[str, str]:
    """Source column -> its name in the model (valid, unique ignoring case)."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for column in table.columns:
        name = column.name
        if not (_COLUMN.match(name) and len(name) <= 63):
            name = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_") or "column"
            name = (f"_{name}" if name[0].isdigit() else name)[:63]
        base, n = name, 2
        while name.lower() in taken:
            name = f"{base[:60]}_{n}"
            n += 1
        taken.add(name.lower())
        names[column.name] = name
    return names


def dataset_names(tables: list[LiveTable]) -> list[tuple[str, LiveTable]]:
    """Each table with its dataset name (valid, unique), in name order."""
    named = []
    taken: set[str] = set()
    for table in sorted(tables, key=lambda t: (name_of(t.name, "t"), t.name)):
        name = base = name_of(table.name, "t")
        n = 2
        while name in taken:
            name = f"{base[:60]}_{n}"
            n += 1
        taken.add(name)
        named.append((name, table))
    return named


def suggestions(tables: list[LiveTable]) -> dict[str, dict[str, object]]:
    """What the file suggests in comments, per dataset: ``cursor`` (and ``why``),
    ``primary_key`` (a unique index), ``accepted_values`` (enum columns)."""
    found: dict[str, dict[str, object]] = {}
    for name, table in dataset_names(tables):
        names = column_names(table)
        hints: dict[str, object] = {}
        if (cursor := cursor_of(table)) is not None and table.table is not None:
            hints["cursor"], hints["why"] = names[cursor[0]], cursor[1]
        if not table.primary_key and table.unique:
            hints["primary_key"] = [names[k] for k in table.unique[0]]
        enums = {names[c.name]: list(c.values) for c in table.columns if c.values}
        if enums:
            hints["accepted_values"] = enums
        if hints:
            found[name] = hints
    return found


def cursor_of(table: LiveTable) -> tuple[str, str] | None:
    """(source column, why) of the best cursor: named like ``updated_at``, a timestamp,
    date or integer, indexed if one is."""
    found = []
    for column in table.columns:
        squashed = re.sub(r"[^a-z0-9]", "", column.name.lower())
        if column.type in _CURSOR_TYPES and any(w in squashed for w in _CURSOR_WORDS):
            indexed = column.name in table.indexed or column.name in table.primary_key[:1]
            found.append((not indexed, _CURSOR_TYPES.index(column.type), column, indexed))
    if not found:
        return None
    _, _, column, indexed = min(found, key=lambda f: (f[0], f[1]))
    why = f"indexed {column.type}" if indexed else (
        f"{column.type}, not indexed: an index on it keeps incremental reads cheap")
    return column.name, why


def render(source: LiveSource, header: Header) -> str:
    """The team file: header comment, team keys, one source with a dataset per table."""
    at = (header.at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        f"# Generated by ferry discover from {source.described} at {at}.",
        "# Review the types, keys and suggested cursors (comments), then save it as",
        f"# teams/{header.team}/{header.team}.yaml and run `ferry check`.",
        f"team: {header.team}",
        f"zone: {scalar(header.zone)}",
        f"owners: [{scalar(header.owner)}]   # who may change this team's files",
        "",
        "sources:",
        f"  {source.name}:",
        f"    kind: {source.kind}",
    ]
    lines += [f"    {key}: {value if key == 'password' else scalar(value)}"
              for key, value in source.keys.items()]
    datasets: list[str] = []
    for name, table in dataset_names(source.tables):
        datasets += _dataset(name, table)
    written = any(not line.lstrip().startswith("#") for line in datasets)
    lines.append("    datasets:" if written else "    datasets: {}")
    return "\n".join(lines + datasets) + "\n"


_PAD = " " * 8


def _dataset(name: str, table: LiveTable) -> list[str]:
    """One dataset's lines: where it is read from, its key, a cursor, its columns."""
    names = column_names(table)
    columns = [c for c in table.columns if table.table is not None or names[c.name] == c.name]
    if not columns:
        return [f"      # {table.name!r} is left out: it has no column the model can declare"]
    lines = [f"      {name}:" + ("   # a view" if table.view else "")]
    lines += _relation(table, columns, names)
    lines += _key(table, names)
    lines += _capture(table, names)
    lines.append(f"{_PAD}columns:")
    width = max(len(scalar(names[c.name])) for c in columns) + 1
    lines += [_column(names[c.name], c, c.name in table.primary_key, width) for c in columns]
    lines += [f"{_PAD}# column {c.name!r} ({c.source.native_type}) is left out: its name is "
              "not a valid column name, and a files source cannot rename it"
              for c in table.columns if c not in columns]
    enums = [c for c in columns if c.values]
    if enums:
        lines.append(f"{_PAD}# checks:   (the enum values of today; uncomment to refuse "
                     "versions with others)")
        lines += [f"{_PAD}#   - accepted_values: {{column: {names[c.name]}, "
                  f"values: {_flow(c.values)}}}" for c in enums]
    return lines


def _relation(table: LiveTable, columns: list[LiveColumn], names: dict[str, str]) -> list[str]:
    """``table:``, or a ``query:`` that renames columns (or names what table: cannot)."""
    if table.table is None:  # files: the source's path
        return []
    changed = [c for c in columns if names[c.name] != c.name]
    if not (changed or table.query_only):
        return [f"{_PAD}table: {scalar(table.table)}"]
    assert table.quote is not None
    quote = table.quote
    items = ", ".join(quote(c.name) if names[c.name] == c.name
                      else f"{quote(c.name)} as {quote(names[c.name])}" for c in columns)
    lines = [f"{_PAD}# columns renamed to valid names: "
             + ", ".join(f"{c.name!r} -> {names[c.name]}" for c in changed)] if changed else []
    return [*lines, f"{_PAD}query: |", f"{_PAD}  select {items} from {table.relation}"]


def _key(table: LiveTable, names: dict[str, str]) -> list[str]:
    if table.primary_key:
        return [f"{_PAD}primary_key: {_flow([names[k] for k in table.primary_key])}"]
    if table.unique:
        return [f"{_PAD}# primary_key: {_flow([names[k] for k in table.unique[0]])}   "
                "(a unique index on not-null columns: uncomment if it identifies rows)"]
    return [f"{_PAD}# no primary key: add primary_key: [...] if some columns identify a row "
            "(merge and history deliveries, cdc and unique checks need one)"]


def _capture(table: LiveTable, names: dict[str, str]) -> list[str]:
    if table.table is None:
        return [f"{_PAD}# capture: incremental   (uncomment to read only new or changed files)"]
    cursor = cursor_of(table)
    if cursor is None:
        return []
    column, why = cursor
    return [f"{_PAD}# capture: incremental",
            f"{_PAD}# cursor: {names[column]}   ({why}; uncomment both for incremental capture)"]


def _column(name: str, column: LiveColumn, key: bool, width: int) -> str:
    t = column.type
    typed = json.dumps(t) if "," in t or t.lower() in _YAML_WORDS else t
    nullable = "" if column.source.nullable and not key else ", nullable: false"
    note = f"   # {column.note}" if column.note else ""
    label = f"{scalar(name)}:".ljust(width)
    return f"          {label} {{type: {typed}{nullable}}}{note}"
