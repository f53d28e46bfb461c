"""Check one file's shape against the typed model and turn pydantic's errors into findings.

A bad entity (a dataset, source, transformer, consumer, zone, platform) is reported and
left out, and the rest of the file is still loaded, so ``ferry check`` reports every
problem at once and the whole-model checks still run on everything that is valid.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from dataferry.model.findings import Path, Report
from dataferry.model.spec import NAME_RULES

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
) -> Shaped:
    """Validate ``raw`` as ``cls``; report problems at ``where`` + their path; drop bad parts.

    ``what`` names the file's object in messages (e.g. "team crm").
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
                report.add("invalid-field", f"{what}: {message}", where + path, key=at_key)
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
    for step in loc:
        if step == "[key]":
            at_key = True
            break
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
        allowed = _fields_at(cls, raw, path[:-1])
        hint = _suggest(field_name, allowed)
        return f"unknown key {field_name!r}{hint}"
    if kind == "missing":
        parent = ".".join(str(p) for p in path[:-1])
        return f"missing required key {field_name!r}" + (f" in {parent}" if parent else "")
    if kind in ("literal_error", "enum"):
        expected = error.get("ctx", {}).get("expected", "")
        choices = [c.strip(" '") for c in expected.replace(" or ", ",").split(",")]
        got = error.get("input")
        hint = _suggest(str(got), choices) if isinstance(got, str) else ""
        return f"{name}: {got!r} is not one of {', '.join(choices)}{hint}"
    if kind == "string_pattern_mismatch":
        what, rule = NAME_RULES.get(error.get("ctx", {}).get("pattern", ""), ("", "?"))
        what = f"{what} " if what else ""
        return f"{error.get('input')!r} is not a valid {what}name ({rule})"
    if kind == "string_too_long" and path and isinstance(error.get("input"), str):
        return f"{name}: names may be at most 63 characters"
    if kind in ("bad_kind", "bad_check", "bad_notify"):
        return f"{name}: {error['msg']}"
    got = error.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {str(got)[:60]!r})"
    if kind.startswith("bad_") or kind in ("transformer_body", "empty_range"):
        shown = ""
    if any(str(step) in SECRET_KEYS for step in path):
        shown = ""  # never echo what may be a secret
    return f"{name}: {error['msg']}{shown}"


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    if choices and len(choices) <= 20:
        return f" (expected one of: {', '.join(sorted(choices))})"
    return ""


def _fields_at(cls: type[BaseModel], raw: Any, path: Path) -> list[str]:
    """The keys allowed at ``path`` (used to suggest the closest one to an unknown key)."""
    annotation: Any = cls
    node = raw
    for step in path:
        annotation = _pick(annotation, node)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            info = annotation.model_fields.get(str(step)) or next(
                (f for f in annotation.model_fields.values() if f.alias == step), None
            )
            if info is None:
                return []
            annotation = info.annotation
        else:
            args = typing.get_args(_strip(annotation))
            annotation = args[-1] if args else Any
        node = node.get(step) if isinstance(node, dict) else (
            node[step] if isinstance(node, list) and isinstance(step, int) and step < len(node)
            else None
        )
    annotation = _pick(annotation, node)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [info.alias or name for name, info in annotation.model_fields.items()]
    return []


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
