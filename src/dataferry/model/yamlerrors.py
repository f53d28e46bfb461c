"""libyaml's syntax errors in plain words, with what to do about them.

libyaml says *what* its parser did not expect ("mapping values are not allowed in this
context"); a model author wants to know what is wrong with their line: a colon inside a
value, a key indented one space off, a cron schedule read as an alias. ``explain`` looks
at the line the error points at and says that, keeping libyaml's own words at the end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

_LINE_BREAKS = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
"""Where libyaml (YAML 1.1) ends a line, so its line numbers index this file's lines."""


@dataclass(frozen=True)
class _Spot:
    """Where libyaml stopped: the 0-based line and column, and the file's lines."""

    lines: list[str]
    line: int
    column: int

    def text(self, line: int | None = None) -> str:
        index = self.line if line is None else line
        return self.lines[index] if 0 <= index < len(self.lines) else ""

    def indent(self, line: int | None = None) -> int:
        text = self.text(line)
        return len(text) - len(text.lstrip(" "))

    def previous(self, line: int | None = None) -> int | None:
        """The nearest line above ``line`` holding something other than a comment."""
        index = (self.line if line is None else line) - 1
        while index >= 0:
            stripped = self.text(index).strip()
            if stripped and not stripped.startswith("#"):
                return index
            index -= 1
        return None


def explain(error: yaml.MarkedYAMLError, text: str) -> str:
    """``error`` in plain words with a hint, or libyaml's words when none fits."""
    problem = error.problem or str(error)
    context = error.context or ""
    original = f"{context}, {problem}" if context else problem
    mark = error.problem_mark
    if mark is None:
        return original
    spot = _Spot(_LINE_BREAKS.split(text), mark.line, mark.column)
    start = error.context_mark.line if error.context_mark is not None else None
    plain = _plain(problem, context, spot, start)
    return f"{plain} (libyaml: {original})" if plain else original


def _plain(problem: str, context: str, spot: _Spot, start: int | None) -> str | None:
    """The plain explanation of one libyaml error, or None."""
    if "mapping values are not allowed" in problem:
        return _colon(spot)
    if "mapping keys are not allowed" in problem:
        return "a '? ' inside a value starts a key in YAML: quote the value"
    if "could not find expected ':'" in problem:
        line = spot.line if start is None else start
        return (f"line {line + 1} ({spot.text(line).strip()[:40]!r}) is not a 'key: value' "
                "pair: add ': ' after the key, or, if it continues the value above, quote "
                "that value (or use | for text over several lines)")
    if "did not find expected key" in problem and "block mapping" in context:
        return _block_mapping(spot, start)
    if "expected '-' indicator" in problem:
        return ("this line is in a list but is no list item: start it with '- ', or indent "
                "it as far as the first key of the item above")
    if "cannot start any token" in problem:
        char = spot.text()[spot.column:spot.column + 1]
        return (f"a value cannot start with {char!r} in YAML: quote it"
                f"{_quoted(spot)}") if char.strip() else None
    if "scanning an alias" in context or "scanning an anchor" in context:
        char = "*" if "alias" in context else "&"
        return (f"a value starting with {char!r} is read as a YAML "
                f"{'alias' if char == '*' else 'anchor'}: quote it{_quoted(spot)}")
    if "quoted scalar" in context and "end of stream" in problem:
        opened = f" on line {start + 1}" if start is not None else ""
        return (f"the quote opened{opened} is never closed: close it (a value holding that "
                "quote character can use the other kind of quotes)")
    if "unknown escape character" in problem:
        return ("a backslash inside double quotes starts an escape such as \\n: put the "
                "value in single quotes, or write each backslash twice")
    if "flow mapping" in context or "flow sequence" in context:
        opening, closing = ("{", "}") if "mapping" in context else ("[", "]")
        opened = f" on line {start + 1}" if start is not None else ""
        return (f"the '{opening}' opened{opened} is not closed where expected: close it with "
                f"'{closing}' on its line, separate its items with ', ', and quote an item "
                "that holds ': ' or ','")
    if "block scalar" in context:
        return ("after '|' or '>' only a comment may follow on the same line: put the text "
                "on the next lines, indented")
    return None


def _colon(spot: _Spot) -> str:
    before = spot.text()[:spot.column]
    if re.search(r"\S:(\s|$)", before.lstrip(" -")):
        return "a ': ' inside a value makes it look like a key: quote the value" + _quoted(spot)
    above = spot.previous()
    if above is not None and spot.indent() > spot.indent(above):
        key = spot.text(above).strip().split(":", 1)[0]
        return (f"this line is indented more than {key!r} on line {above + 1}, which already "
                "has a value: line the two up, or, if this belongs under it, remove its value")
    return "a ': ' where no key can start: quote the value that holds it" + _quoted(spot)


def _block_mapping(spot: _Spot, start: int | None) -> str:
    here = spot.text()
    stripped = here.strip()
    if stripped.startswith("-"):
        return ("a list item ('- ...') where a key was expected: put the list under a key "
                "(the key on its own line, the items below it), or line its dash up with the "
                "items above")
    before = here[:spot.column].rstrip()
    if before.endswith(("'", '"')) and before.lstrip().count(before[-1]) >= 2:
        return "text after the closing quote: quote the whole value"
    here_indent, above = spot.indent(), spot.previous()
    if start is None or above is None or here_indent == spot.indent(start):
        return ("this line does not continue the mapping above it: check the indentation of "
                "this line and the one before")
    keys = spot.indent(start)
    if keys < here_indent < spot.indent(above):
        return (f"this line is indented {_spaces(here_indent)}: less than line {above + 1} "
                f"({spot.indent(above)}) and more than line {start + 1} ({keys}): line it up "
                "with the one it belongs with")
    side = "less" if here_indent < keys else "more"
    return (f"this line is indented {side} ({_spaces(here_indent)}) than the keys around it "
            f"({_spaces(keys)}, from line {start + 1}): line it up with them, or with its "
            "parent's keys if it belongs there")


def _spaces(count: int) -> str:
    return f"{count} space{'' if count == 1 else 's'}"


def _quoted(spot: _Spot) -> str:
    """`` (key: "value")`` for the line at ``spot``, when it is a simple ``key: value``."""
    match = re.fullmatch(r"\s*(-\s+)?([\w.-]+):\s+(.+?)\s*", spot.text())
    if match is None or '"' in match.group(3):
        return ""
    return f' ({match.group(2)}: "{match.group(3)}")'
