"""Where a position in a transformer's SQL is in the model's files.

A query given as ``sql:`` in YAML is a scalar: usually a literal block (``sql: |``), whose
line N is the file's line after the ``|`` plus N, shifted right by the block's
indentation; or a folded block, a plain or a quoted scalar, whose lines YAML joins with
spaces (positions then follow the text, line by line, as the parser read it). A query in
a ``sql_file:`` is its own file, positions as they are.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

_BLOCK = re.compile(r"[|>][-+0-9]*\s*(#.*)?\Z")


@dataclass(frozen=True)
class SqlPlace:
    """Maps character offsets of a query to (line, column) of the file it was written in.

    ``segments`` are (offset in the query, file line, file column) where each piece of the
    query starts, sorted by offset.
    """

    file: str
    segments: tuple[tuple[int, int, int], ...]

    def position(self, offset: int | None) -> tuple[int, int]:
        """The 1-based (line, column) of ``offset``; the query's start when None."""
        if not self.segments:
            return (0, 0)
        if offset is None:
            return self.segments[0][1:]
        starts = [segment[0] for segment in self.segments]
        index = max(bisect.bisect_right(starts, offset) - 1, 0)
        start, line, column = self.segments[index]
        return (line, column + max(offset - start, 0))


def sql_file_place(file: str, sql: str) -> SqlPlace:
    """Positions in a ``.sql`` file: its own lines and columns."""
    return SqlPlace(file, tuple((offset, number, 1)
                                for number, offset in enumerate(_line_starts(sql), 1)))


def yaml_place(file: str, text: str, line: int, column: int, sql: str) -> SqlPlace:
    """Positions of a query read from the YAML scalar that starts at ``line``:``column``
    of ``text`` (the YAML file)."""
    lines = text.splitlines()
    if not 0 < line <= len(lines):
        return SqlPlace(file, ((0, line, column),))
    head = lines[line - 1][column - 1:]
    if _BLOCK.match(head):
        indent = _block_indent(lines, line)
        if head.startswith("|"):
            return SqlPlace(file, tuple((offset, line + number, indent + 1)
                                        for number, offset in enumerate(_line_starts(sql), 1)))
        return _folded(file, lines, line + 1, indent + 1, len(sql))
    quoted = 1 if head[:1] in ("'", '"') else 0
    return _folded(file, lines, line, column + quoted, len(sql))


def _line_starts(sql: str) -> list[int]:
    return [0, *(m.end() for m in re.finditer(r"\r\n|\n|\r", sql))]


def _block_indent(lines: list[str], line: int) -> int:
    """The indentation of a block scalar: that of its first line that is not blank."""
    for text in lines[line:]:
        if text.strip():
            return len(text) - len(text.lstrip(" "))
    return 0


def _folded(file: str, lines: list[str], first: int, column: int, length: int) -> SqlPlace:
    """Segments of a scalar whose lines are joined with one space each (folded blocks,
    plain and quoted multi-line scalars): close enough for the lines people write."""
    segments: list[tuple[int, int, int]] = []
    offset = 0
    for number in range(first, len(lines) + 1):
        text = lines[number - 1]
        if number == first:
            start = column
            piece = text[column - 1:]
        else:
            stripped = text.lstrip(" \t")
            start = len(text) - len(stripped) + 1
            piece = stripped
        segments.append((offset, number, start))
        offset += len(piece.rstrip()) + 1
        if offset >= length:
            break
    return SqlPlace(file, tuple(segments))
