"""``ferry check`` rules for stream sources (``mqtt``, ``nats``) and their datasets.

- a stream dataset needs a topic (mqtt) or subject (nats), its own or its source's
  (``invalid-field``), and a ``primary_key`` (``missing-primary-key``): a run's messages
  are merged by key, the last one of a key wins;
- ``fields:`` names declared columns (``unknown-reference``); a ``$topic[N]`` level must
  exist in the topic filter (``invalid-field``);
- ``capture:`` and ``cursor:`` do not apply (a stream is read as changes), nor do
  ``topic``/``subject``/``fields``/``batch`` on other sources or the other stream kind
  (``invalid-field``);
- a password or token is a reference (``plaintext-secret``).

The syntax of topics, subjects and field paths is checked where the model is loaded
(``spec``: ``invalid-field``).
"""

from __future__ import annotations

from collections.abc import Callable

from dataferry.model.findings import Path, Report, suggest
from dataferry.model.graph import DatasetEntry
from dataferry.model.spec import MqttSource, NatsSource
from dataferry.model.streamnames import parse_field_path

__all__ = ["check_stream_dataset", "check_stream_source"]

_STREAM_KEYS = {"mqtt": ("topic",), "nats": ("subject",)}


def check_stream_dataset(report: Report, entry: DatasetEntry) -> None:
    """The rules above for one source dataset (of any source kind)."""
    dataset, source, path, ref = entry.dataset, entry.source, entry.path, entry.ref
    assert source is not None
    kind = source.kind
    for other, keys in _STREAM_KEYS.items():
        for key in keys:
            if kind != other and getattr(dataset, key) is not None:
                report.add("invalid-field", f"{ref}: {key}: applies only to an {other} source",
                           (*path, key), key=True)
    if kind not in _STREAM_KEYS:
        for key in ("fields", "batch"):
            if getattr(dataset, key):
                report.add("invalid-field", f"{ref}: {key}: applies only to mqtt and nats "
                           "sources", (*path, key), key=True)
        return
    assert isinstance(source, MqttSource | NatsSource)
    name = "topic" if isinstance(source, MqttSource) else "subject"
    a = "an" if kind == "mqtt" else "a"
    filter_text = getattr(dataset, name) or getattr(source, name)
    if filter_text is None:
        report.add("invalid-field", f"{ref}: {a} {kind} dataset needs {name}: (or its source "
                   f"one)", path)
    if not dataset.primary_key:
        report.add("missing-primary-key", f"{ref}: {a} {kind} dataset needs a primary_key: a "
                   "run merges its messages by key, the last of a key wins", path)
    if "capture" in dataset.model_fields_set:
        report.add("invalid-field", f"{ref}: capture: does not apply to {a} {kind} source "
                   "(a stream is read as changes); remove it", (*path, "capture"), key=True)
    if dataset.cursor is not None:
        report.add("invalid-field", f"{ref}: cursor: does not apply to {a} {kind} source; "
                   "remove it", (*path, "cursor"), key=True)
    separator = "/" if kind == "mqtt" else "."
    for column, text in dataset.fields.items():
        at: Path = (*path, "fields", column)
        if column not in dataset.columns:
            report.add("unknown-reference", f"{ref} fields: unknown column {column!r}"
                       f"{suggest(column, dataset.columns, 'its columns')}", at, key=True)
        field_path = parse_field_path(text)  # the syntax was checked on load
        if field_path.level is not None and filter_text is not None:
            levels = filter_text.split(separator)
            deep = "#" in levels or ">" in levels
            if not deep and not -len(levels) <= field_path.level < len(levels):
                report.add("invalid-field", f"{ref} fields: {column}: {text} names level "
                           f"{field_path.level}, but {name} {filter_text!r} has "
                           f"{len(levels)} levels (counted from 0)", at)


def check_stream_source(report: Report, source: object, what: str, path: Path,
                        secret: Callable[[str | None, str, Path], None],
                        dsn: Callable[[str, str, Path], None]) -> None:
    """Secrets of a stream source are references."""
    if isinstance(source, MqttSource | NatsSource):
        secret(source.password, f"{what} password", (*path, "password"))
        dsn(source.url, f"{what}'s url", (*path, "url"))
    if isinstance(source, NatsSource):
        secret(source.token, f"{what} token", (*path, "token"))
