"""Findings: what ``ferry check`` reports, and where in the model files each one points."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from dataferry.model.yamlfile import Mapping, Mark, RawMark, Sequence, position

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


Path = tuple[str | int, ...]
"""A path into the model, e.g. ``("teams", "crm", "consumers", "wh", "datasets", 0, "ref")``."""


@dataclass
class Locator:
    """Finds the file, line and column of any path into the model.

    Each top-level object (the ecosystem, a team header, a source, a transformer, a
    consumer) registers the file and parsed node it came from; deeper paths are found by
    walking the positioned node. Positions are looked up only when a finding needs one.
    """

    roots: dict[Path, tuple[str, Any, Path]] = field(default_factory=dict)

    def register(self, path: Path, file: str, node: Any, inner: Path = ()) -> None:
        """``path`` (and everything below it) was read from ``node``, at ``inner`` in it."""
        self.roots.setdefault(path, (file, node, inner))

    def locate(self, path: Path, *, key: bool = False) -> tuple[str, int, int]:
        """(file, line, column) of ``path``; ``key=True`` points at a mapping key itself."""
        for cut in range(len(path), -1, -1):
            root = self.roots.get(path[:cut])
            if root is not None:
                file, node, inner = root
                line, column = _walk(node, inner + path[cut:], key)
                return file, line, column
        return "ferry.yaml", 0, 0

    def file_of(self, path: Path) -> str:
        return self.locate(path)[0]


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
    ) -> None:
        file, line, column = self.locator.locate(path, key=key)
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
