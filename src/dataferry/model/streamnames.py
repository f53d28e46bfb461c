"""The names stream sources use: MQTT topic filters, NATS subjects and field paths.

``ferry check`` validates these where the model is loaded (``spec``), so a bad topic is
an ``invalid-field`` finding with its file, line and column, before anything connects.

- An **MQTT topic filter** has levels separated by ``/``; ``+`` matches one level and must
  be a whole level; ``#`` matches the rest and must be the whole last level.
- A **NATS subject** has tokens separated by ``.``, none empty, no whitespace; ``*``
  matches one token and must be a whole token; ``>`` matches the rest and must be the
  whole last token.
- A **field path** says where a column's value comes from in a message: ``payload`` (the
  JSON payload itself), ``payload.t.c`` (member ``c`` of member ``t``), ``$topic`` (the
  topic or subject the message arrived on), ``$topic[1]`` (its level 1, counting from 0;
  ``$topic[-1]`` is the last level). ``$subject`` is the same as ``$topic``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["FieldPath", "mqtt_filter_problem", "nats_subject_problem", "parse_field_path"]

_TOPIC_PATH = re.compile(r"\$(topic|subject)(?:\[(-?[0-9]+)\])?\Z")


@dataclass(frozen=True)
class FieldPath:
    """Where a column's value comes from: the payload at ``members`` (``()`` is the whole
    payload), or the topic (``topic=True``), whole or its level ``level``."""

    members: tuple[str, ...] = ()
    topic: bool = False
    level: int | None = None


def parse_field_path(text: str) -> FieldPath:
    """Parse ``payload.a.b``, ``$topic`` or ``$topic[N]``; ``ValueError`` says what is wrong."""
    match = _TOPIC_PATH.match(text)
    if match:
        return FieldPath(topic=True, level=None if match.group(2) is None else int(match.group(2)))
    if text.startswith("$"):
        raise ValueError(f"{text!r} is not a field path: the message's own values are $topic "
                         "and $topic[N] (level N of the topic, from 0)")
    head, *members = text.split(".")
    if head != "payload":
        raise ValueError(f"{text!r} is not a field path: start it with payload (the message), "
                         f"e.g. payload.{text}, or use $topic / $topic[N]")
    if any(member == "" for member in members):
        raise ValueError(f"{text!r} is not a field path: a member name is empty (two dots, or "
                         "a dot at the end)")
    return FieldPath(members=tuple(members))


def mqtt_filter_problem(topic: str) -> str | None:
    """What is wrong with an MQTT topic filter (None: nothing)."""
    if not topic:
        return "a topic filter cannot be empty"
    if "\0" in topic:
        return "a topic filter cannot hold a NUL character"
    if len(topic.encode("utf-8")) > 65535:
        return "a topic filter is at most 65535 bytes"
    levels = topic.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return "# must be a whole level and the last one (e.g. sensors/#)"
        if "+" in level and level != "+":
            return "+ must be a whole level (e.g. sensors/+/temperature)"
    return None


_NATS_SPACE = re.compile(r"\s")


def nats_subject_problem(subject: str) -> str | None:
    """What is wrong with a NATS subject (filter) (None: nothing)."""
    if not subject:
        return "a subject cannot be empty"
    if _NATS_SPACE.search(subject):
        return "a subject cannot hold whitespace"
    tokens = subject.split(".")
    for index, token in enumerate(tokens):
        if token == "":
            return "a subject's tokens cannot be empty (two dots, or a dot at an end)"
        if ">" in token and (token != ">" or index != len(tokens) - 1):
            return "> must be a whole token and the last one (e.g. sensors.>)"
        if "*" in token and token != "*":
            return "* must be a whole token (e.g. sensors.*.temperature)"
    return None
