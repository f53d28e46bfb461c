"""Read a YAML model file into plain dicts and lists, without positions.

Loading a model needs positions only for the findings, and few files have any. Keeping
where every key and value stood (``yamlfile.parse_yaml``) is about 30% of the time of
reading a large model, and most of the memory its parsed files take while it loads. So
files are read here without them, and ``findings.Locator`` parses a file again, with
positions, when a finding in it needs one.

What this reader leaves to ``parse_yaml`` (it then returns ``parse_yaml``'s document, so
the values and problems are always the same): anchors and aliases (counted against alias
bombs), tags, merge keys, keys given twice (reported with both positions), keys that are
collections, several documents, and everything that is not YAML it can read (its errors
say where).
"""

from __future__ import annotations

import gc
from typing import Any

import yaml

from dataferry.model.yamlfile import (
    _ALIAS,
    _MAPPING_END,
    _MAPPING_START,
    _SCALAR,
    _SEQUENCE_END,
    _SEQUENCE_START,
    Document,
    YamlProblem,
    parse_yaml,
    protect_type_commas,
    resolve_plain,
    yaml_text,
)

try:  # libyaml is nearly always there; the pure-Python parser is the fallback.
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]


class _Unusual(Exception):
    """What ``parse_yaml`` reads, not this reader."""


def parse_values(data: bytes | str, strings: Strings | None = None) -> Document:
    """``parse_yaml`` without positions: the same values (plain dicts and lists, or
    ``parse_yaml``'s positioned ones for a file with anchors, tags, merge keys or keys
    given twice) and the same ``YamlProblem`` for what is not readable YAML.

    ``strings`` (shared by the files of one model) makes equal scalars one object."""
    text = yaml_text(data)
    try:
        return Document(_PlainBuilder(text, strings or Strings()).build())
    except (_Unusual, YamlProblem, yaml.YAMLError, RecursionError):
        return parse_yaml(text)




_NOT_SEEN = object()


class Strings:
    """The scalars read so far: a text met again (``int64``, ``nullable``, a column name)
    is resolved once and then shared, so a large model holds one object per distinct
    text instead of one per occurrence. One per model load."""

    def __init__(self) -> None:
        self.plain: dict[str, Any] = {}
        self.quoted: dict[str, str] = {}


class _PlainBuilder:
    """``yamlfile._Builder`` without the marks: the hot path of loading a large model, so
    scalars are read inline (each the same three steps: the comma stand-in, the cache,
    ``resolve_plain``)."""

    def __init__(self, text: str, strings: Strings) -> None:
        protected, self.stand_in = protect_type_commas(text)
        self.parser: Any = _Loader(protected)
        self.plain = strings.plain
        self.quoted = strings.quoted

    def build(self) -> Any:
        parser = self.parser
        collecting = gc.isenabled()
        gc.disable()  # the values hold no cycles: collecting while building only costs time
        try:
            parser.get_event()  # StreamStart
            if isinstance(parser.get_event(), yaml.StreamEndEvent):
                return None
            value = self._node(parser.get_event())  # after DocumentStart
            parser.get_event()  # DocumentEnd
            if not isinstance(parser.get_event(), yaml.StreamEndEvent):
                raise _Unusual("several documents")
            return value
        finally:
            parser.dispose()
            if collecting:
                gc.enable()

    def _node(self, event: Any) -> Any:
        kind = type(event)
        if kind is _ALIAS or event.tag or event.anchor:
            raise _Unusual("an alias, a tag or an anchor")
        if kind is _SCALAR:
            text = event.value
            if self.stand_in is not None and self.stand_in in text:
                text = text.replace(self.stand_in, ",")
            if not event.implicit[0]:
                return self.quoted.setdefault(text, text)
            value = self.plain.get(text, _NOT_SEEN)
            if value is _NOT_SEEN:
                value = self.plain[text] = resolve_plain(text)
            return value
        if kind is _MAPPING_START:
            return self._mapping()
        if kind is _SEQUENCE_START:
            return self._sequence()
        raise _Unusual(kind.__name__)  # pragma: no cover - no other event starts a node

    def _sequence(self) -> list[Any]:
        items: list[Any] = []
        get_event = self.parser.get_event
        append = items.append
        stand_in, plain = self.stand_in, self.plain
        while True:
            event = get_event()
            kind = type(event)
            if kind is _SEQUENCE_END:
                return items
            if kind is _SCALAR and event.implicit[0] and not (event.tag or event.anchor):
                text = event.value
                if stand_in is not None and stand_in in text:
                    text = text.replace(stand_in, ",")
                value = plain.get(text, _NOT_SEEN)
                if value is _NOT_SEEN:
                    value = plain[text] = resolve_plain(text)
                append(value)
            else:
                append(self._node(event))

    def _mapping(self) -> dict[Any, Any]:
        mapping: dict[Any, Any] = {}
        get_event = self.parser.get_event
        stand_in, plain = self.stand_in, self.plain
        while True:
            event = get_event()
            kind = type(event)
            if kind is _MAPPING_END:
                return mapping
            if kind is not _SCALAR:
                raise _Unusual("a key that is a collection, or an alias")
            if event.implicit[0] and not (event.tag or event.anchor):
                text = event.value
                if stand_in is not None and stand_in in text:
                    text = text.replace(stand_in, ",")
                key = plain.get(text, _NOT_SEEN)
                if key is _NOT_SEEN:
                    key = plain[text] = resolve_plain(text)
            else:
                key = self._node(event)
            if key == "<<" or key in mapping:
                raise _Unusual("a merge key, or a key given twice")
            event = get_event()
            if type(event) is _SCALAR and event.implicit[0] and not (event.tag or event.anchor):
                text = event.value
                if stand_in is not None and stand_in in text:
                    text = text.replace(stand_in, ",")
                value = plain.get(text, _NOT_SEEN)
                if value is _NOT_SEEN:
                    value = plain[text] = resolve_plain(text)
                mapping[key] = value
            else:
                mapping[key] = self._node(event)
