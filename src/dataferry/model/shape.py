"""Check one file's shape against the typed model and turn pydantic's errors into findings.

A bad entity (a dataset, source, transformer, consumer, zone, platform) is reported and
left out, and the rest of the file is still loaded, so ``ferry check`` reports every
problem at once and the whole-model checks still run on everything that is valid.
"""

from __future__ import annotations

import functools
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from dataferry.model.findings import Locator, Path, Report, close_match, suggest
from dataferry.model.spec import NAME_PATTERN, NAME_RULES, VALUE_RULES

SECRET_KEYS = frozenset({"password", "secret", "token", "dsn", "headers"})
"""Keys whose values a finding never quotes."""

ENTITY_PATHS: tuple[tuple[str | None, ...], ...] = (
    ("sources", None, "datasets", None),
    ("sources", None),
    ("transformers", None),
    ("consumers", None),
    ("zones", None),
    ("platforms", None),
)
"""Paths (None = any name) of the entities that are dropped one by one when invalid."""


@dataclass
class Shaped:
    """The result of shaping one file: the object (or None) and what was left out."""

    value: BaseModel | None
    dropped: list[Path] = field(default_factory=list)


def shape(
    cls: type[BaseModel],
    raw: dict[str, Any],
    report: Report,
    where: Path,
    what: str,
    locator: Locator | None = None,
) -> Shaped:
    """Validate ``raw`` as ``cls``; report problems at ``where`` + their path; drop bad parts.

    ``what`` names the file's object in messages (e.g. "team crm"); ``locator`` finds
    positions (default: the report's, which knows one file per team: pass one for the
    team's other files).
    """
    data: dict[str, Any] = dict(raw)
    dropped: list[Path] = []
    for _ in range(3):
        try:
            return Shaped(cls.model_validate(data), dropped)
        except ValidationError as exc:
            cuts = set()
            for error in exc.errors(include_url=False):
                path, at_key = _clean_path(raw, error["loc"])
                if any(path[: len(d)] == d for d in dropped):
                    continue  # already reported: it was dropped for an earlier error
                at_key = at_key or error["type"] == "extra_forbidden"
                message = _message(cls, raw, path, error)
                report.add("invalid-field", f"{what}: {message}", where + path, key=at_key,
                           locator=locator)
                cuts.add(_cut(path))
            for cut in sorted(cuts, key=len):
                if any(cut[: len(d)] == d for d in dropped):
                    continue
                if not _drop(data, cut):
                    return Shaped(None, dropped)
                dropped.append(cut)
    return Shaped(None, dropped)  # pragma: no cover - pruning converges in two rounds


def _cut(path: Path) -> Path:
    for pattern in ENTITY_PATHS:
        if len(path) >= len(pattern) and all(
            p is None or p == step for p, step in zip(pattern, path, strict=False)
        ):
            return path[: len(pattern)]
    return path[:1]


def _drop(data: dict[str, Any], cut: Path) -> bool:
    """Remove ``cut`` from ``data`` (copying what it changes); False if it cannot be dropped."""
    if not cut:
        return False
    if len(cut) == 1:
        if cut[0] not in data:
            return False  # a missing required key: nothing to drop
        del data[cut[0]]
        return True
    parent: Any = data
    for step in cut[:-1]:
        if not isinstance(parent, dict) or step not in parent:
            return False
        parent[step] = dict(parent[step]) if isinstance(parent[step], dict) else parent[step]
        parent = parent[step]
    if isinstance(parent, dict) and cut[-1] in parent:
        del parent[cut[-1]]
        return True
    return False


def _clean_path(raw: Any, loc: tuple[int | str, ...]) -> tuple[Path, bool]:
    """Drop union tags from pydantic's ``loc``; True if the error is about a key itself."""
    path: list[str | int] = []
    node = raw
    at_key = False
    for index, step in enumerate(loc):
        if step == "[key]":
            at_key = True
            break
        if (isinstance(node, dict) and step in node and loc[index + 1:index + 2] == (step,)
                and isinstance(node[step], dict) and step not in node[step]):
            continue  # the tag of a check ({range: {...}}) before the key of the same name
        if isinstance(node, list) and isinstance(step, int) and step < len(node):
            path.append(step)
            node = node[step]
        elif isinstance(node, dict) and step in node:
            path.append(step)
            node = node[step]
        elif isinstance(node, dict) and isinstance(step, str) and _is_tag(node, step):
            continue
        else:
            path.append(step)
            node = None
    return tuple(path), at_key


def _is_tag(node: dict[str, Any], step: str) -> bool:
    return node.get("kind") == step or step in node or step in ("webhook", "nats")


def _message(cls: type[BaseModel], raw: Any, path: Path, error: Any) -> str:
    kind = error["type"]
    name = ".".join(str(p) for p in path) or "file"
    field_name = str(path[-1]) if path else ""
    if kind == "extra_forbidden":
        parent = ".".join(str(p) for p in path[:-1])
        where = f"{parent}: " if parent else ""
        allowed = _fields_at(cls, raw, path[:-1])
        close = close_match(field_name, allowed)
        hint = (f"; did you mean {close!r}?" if close else
                misplaced_key(cls, raw, path) or suggest(field_name, allowed))
        return f"{where}unknown key {field_name!r}{hint}"
    if kind == "missing":
        parent = ".".join(str(p) for p in path[:-1])
        return f"missing required key {field_name!r}" + (f" in {parent}" if parent else "")
    if kind in ("literal_error", "enum"):
        expected = error.get("ctx", {}).get("expected", "")
        choices = [c.strip(" '") for c in expected.replace(" or ", ",").split(",")]
        got = error.get("input")
        close = close_match(got, choices) if isinstance(got, str) else None
        hint = f"; did you mean {close!r}?" if close else ""
        return f"{name}: {got!r} is not one of {', '.join(choices)}{hint}"
    if kind == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern", "")
        got = error.get("input")
        if pattern in VALUE_RULES:
            return f"{name}: {got!r} is not {VALUE_RULES[pattern]}"
        what, rule = NAME_RULES.get(pattern, ("", "?"))
        valid = valid_name(got, pattern) if isinstance(got, str) else None
        hint = f"; did you mean {valid!r}?" if valid else ""
        if valid and path == ("team",):
            hint = f"; name it {valid!r}, in teams/{valid}/"
        return f"{got!r} is not a valid {what + ' ' if what else ''}name ({rule}){hint}"
    if kind == "string_too_long" and path and isinstance(error.get("input"), str):
        return f"{name}: names may be at most 63 characters"
    if kind == "bad_kind":
        return f"{name}: {_kind_message(error)}"
    if kind in ("bad_check", "bad_notify"):
        return f"{name}: {error['msg']}"
    if kind in ("model_type", "dict_type") and path and isinstance(path[-1], str):
        # A dataset's key under its columns reads as a column that is no mapping.
        hint = misplaced_key(cls, raw, path)
        if hint and len(path) >= 2:
            return f"{name}: not {_a(_singular(str(path[-2])))} (that is a mapping){hint}"
    if kind in _WRONG_TYPE and not any(str(step) in SECRET_KEYS for step in path):
        return f"{name}: {_wrong_type(kind, error)}"
    got = error.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {str(got)[:60]!r})"
    if kind.startswith("bad_") or kind in ("transformer_body", "empty_range", "value_type"):
        shown = ""
    if any(str(step) in SECRET_KEYS for step in path):
        shown = ""  # never echo what may be a secret
    return f"{name}: {error['msg']}{shown}"


_WRONG_TYPE = ("bool_type", "int_type", "float_type", "string_type")


def _wrong_type(kind: str, error: Any) -> str:
    """What a value of the wrong YAML type should look like (YAML 1.2 reads ``no``,
    ``"false"`` and ``0`` as a text, a text and a number; none of them is a boolean)."""
    got = error.get("input")
    if not str(error["msg"]).startswith("Input should"):
        return str(error["msg"])  # a custom error whose message says it all
    if isinstance(got, dict | list) or got is None:
        shown = "a mapping" if isinstance(got, dict) else "a list" if got is not None else "null"
    else:
        shown = str(got).lower() if isinstance(got, bool) else repr(got)[:60]
    quoted = isinstance(got, str)
    if kind == "bool_type":
        if quoted and got.strip().lower() in ("true", "false"):
            return f"{shown} is a quoted text, not a boolean; write true or false without quotes"
        if quoted:
            return f"{shown} is not a boolean (YAML 1.2 reads it as a text); write true or false"
        return f"{shown} is not a boolean; write true or false"
    if kind == "int_type":
        if quoted:
            return f"{shown} is a text, not a whole number; write the number without quotes"
        return f"{shown} is not a whole number"
    if kind == "float_type":
        if quoted:
            return f"{shown} is a text, not a number; write the number without quotes"
        return f"{shown} is not a number"
    if isinstance(got, bool | int | float):
        return f"{shown} is not a text; put it in quotes if you mean the text"
    return f"{shown} is not a text"


def valid_name(text: str, pattern: str = NAME_PATTERN) -> str | None:
    """A valid name (``pattern`` is one of ``NAME_RULES``) close to ``text``: ``Marketing``
    -> ``marketing``, ``DataScience`` -> ``data_science``, ``sales-eu`` -> ``sales_eu``;
    None when nothing valid is left of it."""
    column = "A-Z" in pattern
    dash = "-" if r"_-" in pattern else ""
    name = text if column else re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", text).lower()
    name = re.sub(rf"[^A-Za-z0-9_{dash}]+", "_", name).strip("_")
    name = re.sub(r"^[^A-Za-z_]+" if column else r"^[^a-z]+", "", name)[:63]
    return name if name != text and re.fullmatch(pattern, name) else None


def _kind_message(error: Any) -> str:
    """``kind 'postgresql' is not one of postgres, ...; did you mean 'postgres'?``"""
    choices = str(error["msg"]).partition("one of: ")[2].split(", ")
    given = error.get("input")
    kind = given.get("kind") if isinstance(given, dict) else None
    if kind is None:
        return f"missing key 'kind' (one of: {', '.join(choices)})"
    if not isinstance(kind, str):
        return f"kind must be one of: {', '.join(choices)} (got {str(kind)[:60]!r})"
    close = close_match(kind, choices)
    hint = f"; did you mean {close!r}?" if close else ""
    return f"kind {kind[:60]!r} is not one of {', '.join(choices)}{hint}"


def misplaced_key(cls: type[BaseModel], raw: Any, path: Path) -> str:
    """For an unknown key that is a known one one level down or up (a column written at
    the dataset's level, a dataset key inside a column): which level it belongs to, as a
    hint about its indentation; an empty string when it is known nowhere near."""
    key, parent = path[-1], path[:-1]
    value = _node_at(raw, path)
    model = _model_at(cls, raw, parent)
    for name, info in model.model_fields.items() if model is not None else ():
        child = _strip(info.annotation)
        field = info.alias or name
        if typing.get_origin(child) is dict:
            entry = typing.get_args(child)[-1]
            if _is_entry(entry, value):
                return (f"; it looks like {_a(_singular(field))} of {_describe(parent)}: is "
                        f"it indented one level too little? (put it under {field}:)")
            if any(key in _keys(m) for m in _models(entry)):
                return (f"; it is a key of each {_singular(field)} of {_describe(parent)}: is "
                        "it indented one level too little?")
        else:
            below = _pick(child, _node_at(raw, (*parent, field)))
            if any(key in _keys(m) for m in _models(below)):
                return (f"; it is a key of {field} of {_describe(parent)}: is it indented one "
                        "level too little?")
    if model is None and parent:  # an entry of a mapping of datasets, columns, ...
        owner = _model_at(cls, raw, parent[:-1])
        found = owner.model_fields.get(str(parent[-1])) if owner is not None else None
        entries = _strip(found.annotation) if found is not None else None
        if typing.get_origin(entries) is dict and any(
                key in _keys(m) for m in _models(typing.get_args(entries)[-1])):
            return (f"; it is a key of each {_singular(str(parent[-1]))} of "
                    f"{_describe(parent[:-1])}: is it indented one level too little?")
    for cut in range(len(parent) - 1, -1, -1):
        above = _model_at(cls, raw, parent[:cut])
        if above is not None and key in _keys(above):
            return f"; it is a key of {_describe(parent[:cut])}: is it indented too much?"
    return ""


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The model classes ``annotation`` may be (one, or each of a union of models)."""
    annotation = _strip(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(annotation) for m in _models(a)]
    return [annotation] if _is_model(annotation) else []


def _is_entry(annotation: Any, value: Any) -> bool:
    """Whether ``value`` (a mapping or a shorthand string) is a valid ``annotation``."""
    if not (isinstance(value, str) or (isinstance(value, dict) and value)):
        return False
    if not _is_model(_pick(annotation, value)):
        return False
    try:
        _adapter(annotation).validate_python(value)
    except (ValidationError, ValueError, TypeError):
        return False
    return True


@functools.lru_cache(maxsize=64)
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _keys(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _singular(word: str) -> str:
    return word[:-1] if word.endswith("s") else word


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def _describe(path: Path) -> str:
    """``dataset orders`` for ``(..., "datasets", "orders")``; ``the file`` for ``()``."""
    if not path:
        return "the file's top level"
    if len(path) >= 2 and isinstance(path[-2], str) and path[-2].endswith("s"):
        return f"{_singular(path[-2])} {path[-1]}"
    return ".".join(str(step) for step in path)


def _node_at(raw: Any, path: Path) -> Any:
    node = raw
    for step in path:
        if isinstance(node, dict) and step in node:
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            node = node[step]
        else:
            return None
    return node


def _fields_at(cls: type[BaseModel], raw: Any, path: Path) -> list[str]:
    """The keys allowed at ``path`` (used to suggest the closest one to an unknown key)."""
    model = _model_at(cls, raw, path)
    return _keys(model) if model is not None else []


def _model_at(cls: type[BaseModel], raw: Any, path: Path) -> type[BaseModel] | None:
    """The model class of the mapping at ``path`` in ``raw`` (None if it is no model)."""
    annotation: Any = cls
    node = raw
    for step in path:
        annotation = _pick(annotation, node)
        if _is_model(annotation):
            info = annotation.model_fields.get(str(step)) or next(
                (f for f in annotation.model_fields.values() if f.alias == step), None
            )
            if info is None:
                return None
            annotation = info.annotation
        else:
            args = typing.get_args(_strip(annotation))
            annotation = args[-1] if args else Any
        node = node.get(step) if isinstance(node, dict) else (
            node[step] if isinstance(node, list) and isinstance(step, int) and step < len(node)
            else None
        )
    annotation = _pick(annotation, node)
    return annotation if _is_model(annotation) else None


def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _pick(annotation: Any, node: Any) -> Any:
    """Resolve Annotated/Optional/union-of-models to the model ``node`` is meant to be."""
    annotation = _strip(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [_strip(a) for a in typing.get_args(annotation)]
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        for model in models:
            if isinstance(node, dict) and (
                ("kind" in model.model_fields and node.get("kind") in typing.get_args(
                    _strip(model.model_fields["kind"].annotation)))
                or (len(model.model_fields) == 1 and next(iter(model.model_fields)) in node)
                or any(k in node for k in ("webhook", "nats") if k in model.model_fields)
            ):
                return model
        return models[0] if len(models) == 1 else (
            members[0] if len(members) == 1 else annotation
        )
    return annotation
