"""Findings: what ``ferry check`` reports, and where in the model files each one points."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from dataferry.model.yamlfile import (
    Mapping,
    Mark,
    RawMark,
    Sequence,
    YamlProblem,
    parse_yaml,
    position,
)

Severity = Literal["error", "warning"]

CODES = (
    "parse-error",
    "invalid-field",
    "unknown-type",
    "duplicate-name",
    "unknown-reference",
    "cycle",
    "missing-primary-key",
    "missing-cursor",
    "plaintext-secret",
    "policy-violation",
    "misplaced-definition",
    "not-approved",
    "deprecated-dataset",
    "unauthorized-change",
    "breaking-change",
    "unreachable",
    "schema-mismatch",
    "sql-error",
    "spark-unsupported",
    "agent-unsupported",
)
"""Every stable finding code (MODEL.md's table)."""


@dataclass(frozen=True, order=True)
class Finding:
    """One problem in the model, at a file/line/column (1-based; 0 when unknown)."""

    file: str
    line: int
    column: int
    severity: Severity
    code: str
    message: str

    def as_json(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": self.code,
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "message": self.message,
        }

    def as_text(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.severity}[{self.code}]: {self.message}"


SYNONYMS = {
    "postgresql": "postgres", "pg": "postgres", "psql": "postgres", "mariadb": "mysql",
    "sqlite3": "sqlite", "csv": "files", "parquet": "files", "jsonl": "files",
    "https": "http", "upsert": "merge", "scd2": "history", "overwrite": "replace",
    "full": "replace", "insert": "append",
}
"""Words users write for a choice of another name (a kind, a mode); used when the choice
they stand for is one of the valid ones."""

_LISTED = 20
"""How many valid names a suggestion lists before it says how many more there are."""


def close_match(word: str, choices: Iterable[str]) -> str | None:
    """The valid choice ``word`` most likely meant (a synonym or a close spelling), or None."""
    names = list(choices)
    synonym = SYNONYMS.get(word.lower())
    if synonym in names:
        return synonym
    folded = [name for name in names if name.lower() == word.lower()]
    if folded:
        return folded[0]
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    return close[0] if close else None


def suggest(word: str, choices: Iterable[str], what: str = "") -> str:
    """What follows "unknown ... 'word'": ``; did you mean 'x'?`` for the choice it is
    close to, else the valid names (``; the zones are: eu, us``, or ``; expected one of:
    ...`` without ``what``), or an empty string when there are none."""
    names = list(dict.fromkeys(choices))
    close = close_match(word, names)
    if close is not None:
        return f"; did you mean {close!r}?"
    if not names:
        return ""
    return f"; {what + ' are' if what else 'expected one of'}: {listing(names)}"


def suggest_ref(ref: str, refs: Iterable[str], what: str = "datasets") -> str:
    """``suggest`` for a ``<team>.<name>`` reference: the name is compared with the names
    of the same team only (``sales.clients`` is not close to ``sales.orders`` for sharing
    ``sales.``), and the listing is that team's ``what``."""
    team, _, name = ref.partition(".")
    every = sorted(set(refs))
    known = [r for r in every if r.partition(".")[0] == team]
    close = close_match(name, [r.partition(".")[2] for r in known])
    if close is not None:
        return f"; did you mean {f'{team}.{close}'!r}?"
    if not known:  # a misspelt team: compare whole references
        close = close_match(ref, every)
        return f"; did you mean {close!r}?" if close else f"; team {team} has no {what}"
    return f"; the {what} of team {team} are: {listing(known)}"


def listing(names: list[str]) -> str:
    """``a, b, c``; past twenty names, ``a, b, ..., t, ... and 12 more``."""
    shown = ", ".join(names[:_LISTED])
    return shown + (f", ... and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


Path = tuple[str | int, ...]
"""A path into the model, e.g. ``("teams", "crm", "consumers", "wh", "datasets", 0, "ref")``."""


@dataclass
class Locator:
    """Finds the file, line and column of any path into the model.

    Each top-level object (the ecosystem, a team header, a source, a transformer, a
    consumer) registers the file and parsed node it came from; deeper paths are found by
    walking the positioned node. Positions are looked up only when a finding needs one.

    A YAML file is read without positions (``yamlvalues``) and registered with its
    content instead of a node: the first finding in it parses that content again with
    positions, so a large model keeps no positioned copy of files without findings.
    """

    roots: dict[Path, tuple[str, Any, Path]] = field(default_factory=dict)
    sources: dict[str, bytes] = field(default_factory=dict)
    """The content of each file registered without a node, as it was loaded."""
    parsed: dict[str, Any] = field(default_factory=dict)
    """Those files parsed again with positions (the ones that have a finding)."""

    def register(self, path: Path, file: str, node: Any, inner: Path = ()) -> None:
        """``path`` (and everything below it) was read from ``node``, at ``inner`` in it;
        a ``node`` of None is the whole document of ``file``, whose content is in
        ``sources``."""
        self.roots.setdefault(path, (file, node, inner))

    def sharing(self) -> Locator:
        """A locator of its own roots that finds files' positions as this one does."""
        return Locator(sources=self.sources, parsed=self.parsed)

    def locate(self, path: Path, *, key: bool = False) -> tuple[str, int, int]:
        """(file, line, column) of ``path``; ``key=True`` points at a mapping key itself."""
        for cut in range(len(path), -1, -1):
            root = self.roots.get(path[:cut])
            if root is not None:
                file, node, inner = root
                if node is None:
                    node = self.document(file)
                line, column = _walk(node, inner + path[cut:], key)
                return file, line, column
        return "ferry.yaml", 0, 0

    def position_in(self, file: str, inner: Path = (), *, key: bool = False,
                    node: Any = None) -> Mark:
        """(line, column) of ``inner`` in ``node``, a positioned node of ``file``, or
        (None) in the document of ``file`` (from ``sources``)."""
        return _walk(self.document(file) if node is None else node, inner, key)

    def document(self, file: str) -> Any:
        """``file``'s content parsed with positions (once); None when it has none."""
        if file not in self.parsed:
            data = self.sources.get(file)
            try:
                self.parsed[file] = None if data is None else parse_yaml(data).value
            except YamlProblem:  # not YAML: its finding says where, the rest is at 1:1
                self.parsed[file] = None
        return self.parsed[file]

    def file_of(self, path: Path) -> str:
        for cut in range(len(path), -1, -1):
            root = self.roots.get(path[:cut])
            if root is not None:
                return root[0]
        return "ferry.yaml"


def _walk(node: Any, rest: Path, key: bool) -> Mark:
    mark: RawMark = getattr(node, "mark", (1, 1))
    for index, step in enumerate(rest):
        last = index == len(rest) - 1
        if isinstance(node, Mapping) and step in node:
            mark = node.key_marks[step] if (last and key) else node.value_marks[step]
            node = node[step]
        elif isinstance(node, Sequence) and isinstance(step, int) and 0 <= step < len(node):
            mark = node.item_marks[step]
            node = node[step]
        else:
            break
    return position(mark)


@dataclass
class Report:
    """Findings collected while loading and checking a model."""

    locator: Locator = field(default_factory=Locator)
    findings: list[Finding] = field(default_factory=list)

    def add(
        self,
        code: str,
        message: str,
        path: Path = (),
        *,
        severity: Severity = "error",
        key: bool = False,
        locator: Locator | None = None,
    ) -> None:
        """A finding at ``path``, found by ``locator`` (default: the report's own)."""
        file, line, column = (locator or self.locator).locate(path, key=key)
        self.findings.append(Finding(file, line, column, severity, code, message))

    def add_at(
        self, code: str, message: str, file: str, mark: RawMark | None,
        severity: Severity = "error",
    ) -> None:
        line, column = position(mark) if mark is not None else (0, 0)
        self.findings.append(Finding(file, line, column, severity, code, message))

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def sorted(self) -> list[Finding]:
        return sorted(set(self.findings))
