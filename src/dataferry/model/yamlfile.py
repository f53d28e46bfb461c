"""Read YAML into plain Python values that remember where each key and value stood.

We build values from libyaml's event stream ourselves instead of using ``yaml.safe_load``:
- every mapping and sequence remembers the line/column of each key and value, so a
  finding can point at the exact node;
- duplicate keys are reported (PyYAML silently keeps the last one);
- aliases are counted, so an "billion laughs" alias bomb is refused before anything
  walks it;
- scalars are resolved with the YAML 1.2 core schema (``NO`` stays a string);
- it is about twice as fast as ``yaml.compose`` on large models.
"""

from __future__ import annotations

import bisect
import gc
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from dataferry.model.yamlerrors import explain

try:  # libyaml is nearly always there; the pure-Python parser is the fallback.
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_ALIAS_NODES = 1_000_000
"""How many nodes aliases may add to a document before we refuse it (alias bombs)."""


Mark = tuple[int, int]
"""A 1-based (line, column) in a file."""

RawMark = Any
"""A ``Mark``, or libyaml's 0-based mark object, kept as is while parsing (it is faster);
``position()`` turns either into a ``Mark``."""


def position(mark: RawMark) -> Mark:
    """The 1-based (line, column) of a mark kept by ``Mapping`` or ``Sequence``."""
    if isinstance(mark, tuple):
        return mark
    return (mark.line + 1, mark.column + 1)


class YamlProblem(Exception):
    """The file is not YAML we can read; ``mark`` says where, when known."""

    def __init__(self, message: str, mark: Mark | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


@dataclass
class DuplicateKey:
    """A key given twice in one mapping (the first one wins, as in JSON Schema tools)."""

    key: Any
    first: Mark
    again: Mark


class Mapping(dict[Any, Any]):
    """A dict that remembers the position of each key and of each value."""

    __slots__ = ("key_marks", "mark", "value_marks")

    def __init__(self, mark: RawMark) -> None:
        super().__init__()
        self.mark = mark
        self.key_marks: dict[Any, RawMark] = {}
        self.value_marks: dict[Any, RawMark] = {}


class Sequence(list[Any]):
    """A list that remembers the position of each item."""

    __slots__ = ("item_marks", "mark")

    def __init__(self, mark: RawMark) -> None:
        super().__init__()
        self.mark = mark
        self.item_marks: list[RawMark] = []


@dataclass
class Document:
    """One parsed file: its value and what went wrong on the way that is not fatal."""

    value: Any
    duplicates: list[DuplicateKey] = field(default_factory=list)


_INT = re.compile(r"[-+]?[0-9]+\Z")
_INT_OCT = re.compile(r"0o[0-7]+\Z")
_INT_HEX = re.compile(r"0x[0-9a-fA-F]+\Z")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_SPECIAL: dict[str, Any] = {
    "": None,
    "~": None,
    "null": None,
    "Null": None,
    "NULL": None,
    "true": True,
    "True": True,
    "TRUE": True,
    "false": False,
    "False": False,
    "FALSE": False,
    ".inf": float("inf"),
    ".Inf": float("inf"),
    ".INF": float("inf"),
    "+.inf": float("inf"),
    "+.Inf": float("inf"),
    "+.INF": float("inf"),
    "-.inf": float("-inf"),
    "-.Inf": float("-inf"),
    "-.INF": float("-inf"),
    ".nan": float("nan"),
    ".NaN": float("nan"),
    ".NAN": float("nan"),
}


def resolve_plain(text: str) -> Any:
    """The value of an untagged plain scalar under the YAML 1.2 core schema."""
    if text in _SPECIAL:
        return _SPECIAL[text]
    first = text[0]
    if not (first.isdigit() or first in "+-."):
        return text
    if _INT.match(text):
        return int(text)
    if _INT_OCT.match(text):
        return int(text[2:], 8)
    if _INT_HEX.match(text):
        return int(text[2:], 16)
    if _FLOAT.match(text):
        return float(text)
    return text


def resolves_as_string(text: str) -> bool:
    """True when ``text``, if written as a plain scalar, would be read as a string."""
    return isinstance(resolve_plain(text), str) and text != "<<" if text else False


_TAGGED = {
    "tag:yaml.org,2002:str": str,
    "tag:yaml.org,2002:int": int,
    "tag:yaml.org,2002:float": float,
}


def _mark(m: Any) -> Mark:
    return (m.line + 1, m.column + 1)


def _tagged_scalar(tag: str, text: str, mark: Mark) -> Any:
    if tag == "tag:yaml.org,2002:null":
        return None
    if tag == "tag:yaml.org,2002:bool":
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        raise YamlProblem(f"!!bool value {text!r} is not true or false", mark)
    convert = _TAGGED.get(tag)
    if convert is None:
        raise YamlProblem(
            f"unsupported YAML tag {tag!r}: model files use plain YAML values", mark
        )
    try:
        return convert(text)
    except ValueError:
        raise YamlProblem(f"{text!r} is not a valid {tag.rsplit(':', 1)[-1]}", mark) from None


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise YamlProblem(
            f"the file is not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8",
            (line, column),
        ) from None


_TYPE_START = re.compile(r"(?:decimal|map|struct|list)\s*[(<]")
_NAME_CHAR = re.compile(r"[\w.]")
_FLAT_TYPE = re.compile(r"[^()<>\n]*[)>]")
"""The rest of a type expression that holds no brackets, up to its closing one."""


def _type_starts(text: str) -> Iterator[re.Match[str]]:
    """Where a type expression starts in ``text``: ``decimal(``, ``list<``... not preceded
    by a name character (``xlist<`` is no type). Filtered here rather than by a lookbehind
    in the pattern, which made the regex engine try every position of the file (four
    times slower on a large model file)."""
    for match in _TYPE_START.finditer(text):
        start = match.start()
        if not start or not _NAME_CHAR.match(text, start - 1):
            yield match
_COMMA_STAND_IN = "\u201a"


def _stand_in(text: str) -> str | None:
    """A one-character stand-in for commas that does not occur in ``text``."""
    if _COMMA_STAND_IN not in text:
        return _COMMA_STAND_IN
    for code in range(0xE000, 0xF900):  # the private use area
        if chr(code) not in text:
            return chr(code)
    return None  # pragma: no cover - the text holds every private-use character


def protect_type_commas(text: str) -> tuple[str, str | None]:
    """Keep ``{type: decimal(12,2)}`` and ``{id: map<string,int64>}`` whole in flow style.

    In a YAML flow mapping a comma ends the value, so MODEL.md's own examples would split
    ``decimal(12,2)`` into ``decimal(12`` and a key ``2)``. Commas inside a type
    expression's brackets (closed on the same line) are swapped for a stand-in of the same
    width before parsing (columns stay right) and swapped back in every string afterwards.
    Returns the text and the stand-in used (None when nothing was swapped); the stand-in
    is a character the text does not hold, so no string changes on the way back.
    """
    if "," not in text:
        return text, None
    commas: list[int] = []
    for match in _type_starts(text):
        flat = _FLAT_TYPE.match(text, match.end())
        if flat is not None:  # no bracket inside (decimal(12,2)): every comma is the type's
            comma = text.find(",", match.end(), flat.end())
            while comma != -1:
                commas.append(comma)
                comma = text.find(",", comma + 1, flat.end())
            continue
        depth = 0
        inside: list[int] = []
        for index in range(match.end() - 1, len(text)):
            char = text[index]
            if char in "(<":
                depth += 1
            elif char in ")>":
                depth -= 1
                if depth == 0:  # an unclosed "list<" is prose, not a type: leave it be
                    commas += inside
                    break
            elif char == "\n":
                break
            elif char == "," and depth > 0:
                inside.append(index)
    if not commas:
        return text, None
    stand_in = _stand_in(text)
    if stand_in is None:  # pragma: no cover
        return text, None
    # Sliced around the commas: a large file is not copied character by character.
    pieces, start = [], 0
    for comma in sorted(set(commas)):
        pieces.append(text[start:comma])
        start = comma + 1
    pieces.append(text[start:])
    return stand_in.join(pieces), stand_in


def _hint(text: str, mark: Mark | None) -> str:
    if mark is not None:
        lines = text.splitlines()
        line = lines[mark[0] - 1] if 0 < mark[0] <= len(lines) else ""
        if "\t" in line:
            return " (YAML does not allow tabs for indentation: use spaces)"
        if "${" in line and "{" in line.split("${", 1)[0]:
            return ' (inside {...} quote references: password: "${env:NAME}")'
    return ""


def yaml_text(data: bytes | str) -> str:
    """The text of a model file's content; ``YamlProblem`` when it is too large or not
    UTF-8."""
    if isinstance(data, str):
        return data
    if len(data) > MAX_FILE_BYTES:
        raise YamlProblem(
            f"the file is {len(data) / 2**20:.0f} MiB; model files may be at most "
            f"{MAX_FILE_BYTES // 2**20} MiB (split it into several files)"
        )
    return _decode(data)


def parse_yaml(data: bytes | str) -> Document:
    """Parse one YAML document (a file holds at most one) into positioned values.

    Raises ``YamlProblem`` for anything that is not readable YAML: bad syntax, tabs,
    non-UTF-8 bytes, several documents, unsupported tags, alias bombs, huge files.
    An empty file gives ``Document(None)``.
    """
    text = yaml_text(data)
    lines = _Lines(text) if any(c in text for c in _ODD_BREAKS) else None
    try:
        document = _Builder(text).build()
    except YamlProblem as refused:
        if lines is not None and refused.mark is not None:
            refused.mark = lines.fix(refused.mark)
        raise
    except yaml.MarkedYAMLError as exc:
        mark = _mark(exc.problem_mark) if exc.problem_mark is not None else None
        hint = _hint(text, mark)
        if hint:
            context = f"{exc.context}, " if exc.context else ""
            message = f"invalid YAML: {context}{exc.problem or exc}{hint}"
        else:
            message = f"invalid YAML: {explain(exc, text)}"
        raise YamlProblem(message, lines.fix(mark) if lines and mark else mark) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"invalid YAML: {exc}") from None
    except RecursionError:
        raise YamlProblem("the YAML is nested too deeply") from None
    if lines is not None:
        lines.fix_document(document)
    return document


_ODD_BREAKS = "\x85\u2028\u2029"
_YAML_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
_LINE_BREAK = re.compile("\r\n|[\r\n]")


class _Lines:
    """Turns libyaml's positions into the ones editors show.

    libyaml (YAML 1.1) also ends a line at NEL, LS and PS (U+0085, U+2028, U+2029);
    editors and YAML 1.2 do not, so in a file holding one, later positions are remapped.
    """

    def __init__(self, text: str) -> None:
        self.yaml_starts = [0, *(m.end() for m in _YAML_BREAK.finditer(text))]
        self.starts = [0, *(m.end() for m in _LINE_BREAK.finditer(text))]
        self.length = len(text)

    def fix(self, mark: RawMark) -> Mark:
        line, column = position(mark)
        if line < 1:
            return (line, column)
        if line > len(self.yaml_starts):  # the end of the stream
            offset = self.length
        else:
            offset = min(self.yaml_starts[line - 1] + column - 1, self.length)
        real = bisect.bisect_right(self.starts, offset)
        return (real, offset - self.starts[real - 1] + 1)

    def fix_document(self, document: Document) -> None:
        for dup in document.duplicates:
            dup.first, dup.again = self.fix(dup.first), self.fix(dup.again)
        seen: set[int] = set()
        stack = [document.value]
        while stack:
            node = stack.pop()
            if not isinstance(node, Mapping | Sequence) or id(node) in seen:
                continue  # a scalar, or a node reached again through an alias
            seen.add(id(node))
            node.mark = self.fix(node.mark)
            if isinstance(node, Mapping):
                for key in node:
                    node.key_marks[key] = self.fix(node.key_marks[key])
                    node.value_marks[key] = self.fix(node.value_marks[key])
                stack.extend(node.values())
            else:
                node.item_marks[:] = [self.fix(m) for m in node.item_marks]
                stack.extend(node)


class _Builder:
    """Turns the event stream into ``Mapping``/``Sequence``/scalars.

    This is the hot path of loading a large model, so scalars are handled inline.
    """

    def __init__(self, text: str) -> None:
        text, self.stand_in = protect_type_commas(text)
        self.parser = _Loader(text)
        self.anchors: dict[str, Any] = {}
        self.sizes: dict[int, int] = {}
        self.alias_nodes = 0
        self.duplicates: list[DuplicateKey] = []

    def build(self) -> Document:
        parser: Any = self.parser
        collecting = gc.isenabled()
        gc.disable()  # the values hold no cycles: collecting while building only costs time
        try:
            parser.get_event()  # StreamStart
            event = parser.get_event()
            if isinstance(event, yaml.StreamEndEvent):
                return Document(None)
            value = self._node(parser.get_event())  # after DocumentStart
            parser.get_event()  # DocumentEnd
            event = parser.get_event()
            if not isinstance(event, yaml.StreamEndEvent):
                raise YamlProblem(
                    "the file holds several YAML documents (---); put one in each file",
                    _mark(event.start_mark),
                )
            return Document(value, self.duplicates)
        finally:
            parser.dispose()
            if collecting:
                gc.enable()

    def _size(self, value: Any) -> int:
        """How many nodes ``value`` expands to (memoized, so shared parts count once each)."""
        if not isinstance(value, (dict, list)):
            return 1
        known = self.sizes.get(id(value))
        if known is None:
            children = value.values() if isinstance(value, dict) else value
            known = 1 + sum(self._size(child) for child in children)
            self.sizes[id(value)] = known
        return known

    def _alias(self, event: Any) -> Any:
        if event.anchor not in self.anchors:
            raise YamlProblem(f"unknown alias *{event.anchor}", _mark(event.start_mark))
        value = self.anchors[event.anchor]
        self.alias_nodes += self._size(value)
        if self.alias_nodes > MAX_ALIAS_NODES:
            raise YamlProblem(
                f"aliases expand the YAML by more than {MAX_ALIAS_NODES:,} nodes "
                "(an alias bomb?); use fewer nested aliases",
                _mark(event.start_mark),
            )
        return value

    def _scalar(self, event: Any) -> Any:
        text = event.value
        if self.stand_in is not None and self.stand_in in text:
            text = text.replace(self.stand_in, ",")
        if event.tag and event.tag != "!":
            value = _tagged_scalar(event.tag, text, _mark(event.start_mark))
        elif event.implicit[0]:
            value = resolve_plain(text)
        else:
            value = text
        if event.anchor:
            self.anchors[event.anchor] = value
        return value

    def _node(self, event: Any) -> Any:
        """Read the node that starts with ``event``."""
        kind = type(event)
        if kind is _SCALAR:
            return self._scalar(event)
        if kind is _MAPPING_START:
            return self._mapping(event)
        if kind is _SEQUENCE_START:
            return self._sequence(event)
        if kind is _ALIAS:
            return self._alias(event)
        raise YamlProblem(
            f"unexpected YAML event {kind.__name__}", _mark(event.start_mark)
        )  # pragma: no cover

    def _check_tag(self, event: Any, expected: str) -> None:
        if event.tag and event.tag not in ("!", expected):
            raise YamlProblem(
                f"unsupported YAML tag {event.tag!r}: model files use plain YAML values",
                _mark(event.start_mark),
            )

    def _sequence(self, start: Any) -> Any:
        self._check_tag(start, "tag:yaml.org,2002:seq")
        seq = Sequence(_mark(start.start_mark))
        get_event: Any = self.parser.get_event
        marks = seq.item_marks
        append = seq.append
        stand_in = self.stand_in
        while True:
            event = get_event()
            kind = type(event)
            if kind is _SEQUENCE_END:
                break
            m = event.start_mark
            marks.append((m.line + 1, m.column + 1))
            if kind is _SCALAR and event.implicit[0] and not (event.tag or event.anchor):
                text = event.value
                if stand_in is not None and stand_in in text:
                    text = text.replace(stand_in, ",")
                append(resolve_plain(text))
            else:
                append(self._node(event))
        if start.anchor:  # registered when complete: an alias inside it is unknown
            self.anchors[start.anchor] = seq
        return seq

    def _mapping(self, start: Any) -> Any:
        self._check_tag(start, "tag:yaml.org,2002:map")
        mapping = Mapping(_mark(start.start_mark))
        merges: list[tuple[Any, RawMark]] = []
        get_event: Any = self.parser.get_event
        key_marks = mapping.key_marks
        value_marks = mapping.value_marks
        stand_in = self.stand_in
        while True:
            event = get_event()
            kind = type(event)
            if kind is _MAPPING_END:
                break
            m = event.start_mark
            key_mark = (m.line + 1, m.column + 1)
            if kind is _SCALAR and event.implicit[0] and not (event.tag or event.anchor):
                text = event.value
                if stand_in is not None and stand_in in text:
                    text = text.replace(stand_in, ",")
                if text == "<<":
                    merges.append((self._node(get_event()), key_mark))
                    continue
                key = resolve_plain(text)
            else:
                key = self._node(event)
                if isinstance(key, (dict, list)):
                    raise YamlProblem(
                        "a mapping key must be a plain value, not a collection",
                        position(key_mark),
                    )
                if kind is _SCALAR and event.implicit[0] and event.value == "<<":
                    merges.append((self._node(get_event()), key_mark))
                    continue
            event = get_event()
            m = event.start_mark
            value_mark = (m.line + 1, m.column + 1)
            if type(event) is _SCALAR and event.implicit[0] and not (event.tag or event.anchor):
                text = event.value
                if stand_in is not None and stand_in in text:
                    text = text.replace(stand_in, ",")
                value = resolve_plain(text)
            else:
                value = self._node(event)
            if key in mapping:
                self.duplicates.append(
                    DuplicateKey(key, position(key_marks[key]), position(key_mark))
                )
            else:
                mapping[key] = value
                key_marks[key] = key_mark
                value_marks[key] = value_mark
        for value, value_mark in merges:
            self._merge(mapping, value, value_mark)
        if start.anchor:
            self.anchors[start.anchor] = mapping
        return mapping

    def _merge(self, mapping: Mapping, value: Any, mark: RawMark) -> None:
        """YAML merge keys (``<<: *defaults``): explicit keys win over merged ones."""
        sources = value if isinstance(value, list) else [value]
        for source in sources:
            if not isinstance(source, Mapping):
                raise YamlProblem(
                    "a merge key (<<) takes a mapping or a list of mappings", position(mark)
                )
            for key, item in source.items():
                if key not in mapping:
                    mapping[key] = item
                    mapping.key_marks[key] = source.key_marks.get(key, mark)
                    mapping.value_marks[key] = source.value_marks.get(key, mark)


_SCALAR = yaml.ScalarEvent
_MAPPING_START = yaml.MappingStartEvent
_MAPPING_END = yaml.MappingEndEvent
_SEQUENCE_START = yaml.SequenceStartEvent
_SEQUENCE_END = yaml.SequenceEndEvent
_ALIAS = yaml.AliasEvent
