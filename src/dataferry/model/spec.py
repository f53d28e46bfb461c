"""The typed ecosystem model: what the YAML files and the Python DSL both become.

These pydantic models are the contract of MODEL.md. They check the *shape* of each
file (keys, value types, names); ``dataferry.model.lint`` checks what needs the whole
model (references, policy, cycles). Objects are frozen, compare by value and export back
to the YAML they came from (``dataferry.model.export``).
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    Tag,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from dataferry.model import patterns
from dataferry.model.streamnames import mqtt_filter_problem, nats_subject_problem, parse_field_path
from dataferry.model.types import TypeParseError, format_type, parse_type

CLASSIFICATIONS = ("public", "internal", "confidential", "restricted")
"""From least to most sensitive."""

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_LABEL = re.compile(r"^[a-z][a-z0-9_-]*$")
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION = re.compile(r"(?:([0-9]+)([smhdw]))+\Z")
_DURATION_PART = re.compile(r"([0-9]+)([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


NAME_PATTERN = _NAME.pattern
"""The pattern of team, dataset and other entity names."""
NAME_RULES: dict[str, tuple[str, str]] = {
    _NAME.pattern: ("", "lower case letters, digits and _, starting with a letter"),
    _LABEL.pattern: ("zone/platform/network", "lower case letters, digits, _ and -"),
    _COLUMN.pattern: ("column", "letters, digits and _, not starting with a digit"),
}
"""What each name pattern allows, in words (``shape`` turns pattern errors into these)."""


def _name(pattern: re.Pattern[str]) -> StringConstraints:
    # A pattern constraint is checked in pydantic-core (Rust): large models have many names.
    return StringConstraints(pattern=pattern.pattern, max_length=63)


Name = Annotated[str, _name(_NAME)]
Label = Annotated[str, _name(_LABEL)]
ColumnName = Annotated[str, _name(_COLUMN)]


def _error(kind: str, message: str) -> PydanticCustomError:
    """A validation error whose message is final (braces in user values stay as they are)."""
    return PydanticCustomError(kind, message)  # no context: the text is not formatted


def _check_ref(value: str) -> str:
    team, _, name = value.partition(".")
    if not (_NAME.fullmatch(team) and _NAME.fullmatch(name)):
        raise _error("bad_reference", f"{value!r} is not a reference of the form <team>.<name>")
    return value


def _pattern(pattern: str, description: str | None = None, **more: Any) -> WithJsonSchema:
    """The JSON Schema of a string that ``ferry check`` validates in Python (``patterns``)."""
    schema: dict[str, Any] = {"type": "string", "pattern": pattern, **more}
    if description:
        schema["description"] = description
    return WithJsonSchema(schema)


Ref = Annotated[str, AfterValidator(_check_ref), _pattern(patterns.DATASET_REFERENCE)]


def duration_seconds(text: str) -> int:
    """Seconds in a duration such as ``90s``, ``15m``, ``1h30m``, ``1d`` or ``2w``."""
    return sum(int(n) * _SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


def _check_duration(value: str) -> str:
    if not _DURATION.match(value) or duration_seconds(value) == 0:
        raise _error(
            "bad_duration",
            f"{value!r} is not a duration: write a number and a unit, e.g. 30s, 15m, 1h, 1d, 2w",
        )
    return value


Duration = Annotated[
    str, AfterValidator(_check_duration),
    _pattern(patterns.DURATION, "A number and a unit (s, m, h, d, w), e.g. 30s, 15m, 1h30m, 2w"),
]


def _check_cron(value: str) -> str:
    from croniter import croniter

    if not croniter.is_valid(value):
        raise _error(
            "bad_cron",
            f"{value!r} is not a cron expression (5 fields: minute hour day month weekday, "
            "e.g. '*/15 * * * *')",
        )
    return value


Cron = Annotated[str, AfterValidator(_check_cron), _pattern(patterns.CRON)]


def _check_size(value: int | str) -> int | str:
    from dataferry.store.mirror_cache import parse_size

    try:
        parse_size(value)
    except ValueError as exc:
        raise _error("bad_size", str(exc)) from None
    return value


Size = Annotated[StrictInt | StrictStr, AfterValidator(_check_size)]


def _trigger(value: str) -> str:
    return value if value == "on_change" else _check_cron(value)


Trigger = Annotated[str, AfterValidator(_trigger), _pattern(
    patterns.TRIGGER, "on_change, or a cron expression (minute hour day month weekday)")]


@functools.lru_cache(maxsize=4096)
def _normalize_type(value: str) -> str:
    """Canonical spelling of a type; an unknown type is kept for lint to report."""
    try:
        return format_type(parse_type(value))
    except TypeParseError:
        return value


TypeText = Annotated[str, AfterValidator(_normalize_type), _pattern(
    patterns.COLUMN_TYPE, "int64, string, string(40), decimal(12,2), list<T>, map<K,V>, "
    "struct<name:T, ...>...")]

Secret = Annotated[str, _pattern(
    patterns.SECRET_REFERENCE,
    "A reference ${env:NAME} or ${file:/path}; a literal value is an error (plaintext-secret)",
)]

Url = Annotated[str, WithJsonSchema({
    "type": "string", "not": {"pattern": patterns.URL_WITH_PASSWORD},
    "description": "No password in the URL (plaintext-secret): give it as a reference"})]
"""A DSN or URL: a password written into it is a plaintext-secret (checked by lint)."""

Email = Annotated[str, _pattern(patterns.EMAIL)]


def _not_a_boolean_word(value: Any) -> Any:
    """``deprecated: no`` is a text in YAML 1.2: refuse it rather than deprecate with "no"."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise _error("bool_type", "write true or false, or a message")
    if re.fullmatch(patterns.BOOLEAN_WORD, value):
        raise _error("bool_type", f"{value!r} is not a boolean (YAML 1.2 reads it as a text) "
                     "nor a message; write true or false, or say what to use instead")
    return value


Deprecated = Annotated[
    bool | str, BeforeValidator(_not_a_boolean_word),
    WithJsonSchema({"anyOf": [{"type": "boolean"}, {
        "type": "string", "not": {"pattern": patterns.BOOLEAN_WORD}}]}),
]

Classification = Literal["public", "internal", "confidential", "restricted"]


class Spec(BaseModel):
    """Base of every model object: unknown keys are errors, objects are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              defer_build=True)


# --- ferry.yaml ------------------------------------------------------------------------


class Zone(Spec):
    description: str | None = None
    export_classifications: list[Classification] = Field(
        default_factory=lambda: list[Classification](["public", "internal"]),
        description="Classifications that may flow to consumers in other zones.",
    )
    export_pii: StrictBool = Field(
        False, description="Whether pii columns may flow unmasked to other zones."
    )
    platforms: list[Label] | None = Field(
        None, description="Platforms this zone's jobs may run on (absent: any)."
    )


class Platform(Spec):
    engine: Literal["duckdb", "spark"] = "duckdb"
    description: str | None = None
    master: str | None = Field(None, description="Spark master URL, e.g. local[2]")
    min_rows: StrictInt | None = Field(
        None, ge=0, description="Jobs over data at least this large are planned here."
    )
    network: Label | None = Field(
        None, description="Runs on an agent enrolled in this private network."
    )


class Defaults(Spec):
    platform: Label = "local"
    freshness: Duration = "1d"
    lag: Duration = Field(
        "5m", description="How far back incremental ingests re-read before the last cursor."
    )
    max_delete_ratio: StrictFloat = Field(
        0.5, ge=0, le=1, description="The largest share of a dataset's rows a replace may "
        "remove without --allow-delete.")


class OpenLineage(Spec):
    url: Url = Field(description="Base URL of the OpenLineage HTTP endpoint (e.g. Marquez).")
    endpoint: str = Field("api/v1/lineage", description="Path under url that takes events.")
    api_key: Secret | None = None
    namespace: str | None = Field(None, description="Job namespace; store datasets are in dataferry://<namespace>.")


def _implicit_local(platforms: dict[str, Platform]) -> dict[str, Platform]:
    return platforms if "local" in platforms else {"local": Platform(), **platforms}


class EcosystemFile(Spec):
    """``ferry.yaml``: the ecosystem's name, zones, platforms and settings."""

    ecosystem: Name
    description: str | None = None
    home: str = Field(".ferry", description="Where the store, keys and metadata DB live.")
    store: str | None = Field(None, description="Local path or s3://bucket/prefix.")
    mirror_size: Size | None = Field(
        None, description="Most bytes of data files the local mirror of an s3:// store keeps "
        "(e.g. 20GB; default 20 GiB).")
    metadata: str | None = Field(None, description="SQLAlchemy URL of the metadata DB.")
    zones: dict[Label, Zone] = Field(default_factory=dict)
    platforms: Annotated[dict[Label, Platform], AfterValidator(_implicit_local)] = Field(
        default_factory=lambda: {"local": Platform()}
    )
    defaults: Defaults = Field(default_factory=Defaults)
    admins: list[str] = Field(default_factory=list)
    openlineage: OpenLineage | None = None


# --- columns and checks ------------------------------------------------------------------


class Column(Spec):
    type: TypeText
    nullable: StrictBool = True
    classification: Classification | None = None
    pii: StrictBool = False
    description: str | None = None


def _column_shorthand(value: Any) -> Any:
    """``id: int64`` is short for ``id: {type: int64}``."""
    return {"type": value} if isinstance(value, str) else value


ColumnSpec = Annotated[
    Column, BeforeValidator(_column_shorthand, json_schema_input_type=Column | TypeText)
]


def _one_of(types: tuple[type, ...], what: str) -> BeforeValidator:
    """One finding for a value of none of a union's types (instead of one per type)."""

    def check(value: Any) -> Any:
        if isinstance(value, types) and (bool in types or not isinstance(value, bool)):
            return value
        shown = "null" if value is None else "a mapping" if isinstance(value, dict) else (
            "a list" if isinstance(value, list) else repr(value)[:60])
        shown = str(value).lower() if isinstance(value, bool) else shown
        raise _error("value_type", f"{shown} is not {what}")

    return BeforeValidator(check)


Scalar = Annotated[StrictStr | StrictInt | StrictFloat | StrictBool,
                   _one_of((str, int, float, bool), "a text, a number, true or false")]
Bound = Annotated[StrictInt | StrictFloat | StrictStr,
                  _one_of((str, int, float), "a number or a text (e.g. a date)")]


class NotNullCheck(Spec):
    not_null: list[ColumnName] = Field(min_length=1)


class UniqueCheck(Spec):
    unique: list[ColumnName] = Field(min_length=1)


class AcceptedValues(Spec):
    column: ColumnName
    values: list[Scalar] = Field(min_length=1)


class AcceptedValuesCheck(Spec):
    accepted_values: AcceptedValues


class Range(Spec):
    column: ColumnName
    min: Bound | None = None
    max: Bound | None = None

    @model_validator(mode="after")
    def _bounded(self) -> Range:
        if self.min is None and self.max is None:
            raise PydanticCustomError("empty_range", "a range check needs min, max or both")
        return self


class RangeCheck(Spec):
    range: Range


class RowCount(Spec):
    min: StrictInt | None = Field(None, ge=0)
    max: StrictInt | None = Field(None, ge=0)


class RowCountCheck(Spec):
    row_count: RowCount


class Freshness(Spec):
    column: ColumnName
    max_age: Duration


class FreshnessCheck(Spec):
    freshness: Freshness


CHECK_KINDS = ("not_null", "unique", "accepted_values", "range", "row_count", "freshness")


def _check_kind(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        return key if key in CHECK_KINDS else None
    if isinstance(value, BaseModel):
        return next(iter(type(value).model_fields))
    return None


Check = Annotated[
    Annotated[NotNullCheck, Tag("not_null")]
    | Annotated[UniqueCheck, Tag("unique")]
    | Annotated[AcceptedValuesCheck, Tag("accepted_values")]
    | Annotated[RangeCheck, Tag("range")]
    | Annotated[RowCountCheck, Tag("row_count")]
    | Annotated[FreshnessCheck, Tag("freshness")],
    Discriminator(
        _check_kind,
        custom_error_type="bad_check",
        custom_error_message="a check is a mapping with one key, one of: " + ", ".join(CHECK_KINDS),
    ),
]


# --- datasets ----------------------------------------------------------------------------


class DatasetCommon(Spec):
    """What source datasets and transformer outputs share."""

    description: str | None = None
    primary_key: list[ColumnName] = Field(default_factory=list)
    classification: Classification = "internal"
    status: Literal["production", "development"] = "development"
    deprecated: Deprecated = False
    allowed_consumers: list[Name] | None = None
    columns: dict[ColumnName, ColumnSpec] = Field(min_length=1)
    checks: list[Check] = Field(default_factory=list)
    version: StrictInt = Field(1, ge=1, description="Major version; raise it for a breaking change.")
    retention: StrictInt | None = Field(None, ge=1, description="Versions to keep (default: all).")
    max_delete_ratio: StrictFloat | None = Field(
        None, ge=0, le=1, description="The largest share of its rows a replace may remove "
        "without --allow-delete (default: defaults.max_delete_ratio).")
    partition_by: list[ColumnName] = Field(default_factory=list)
    merge_on_read: StrictBool = Field(
        True, description="Merges mark replaced rows in deletion vectors instead of "
        "rewriting files (Delta reader version 3)")
    platform: Label | None = None


class Pagination(Spec):
    next_link: str | None = Field(
        None, description="Dotted path of the next page's URL in the response, e.g. links.next"
    )
    page_param: str | None = Field(None, description="Query parameter holding the page number")
    size_param: str | None = None
    size: StrictInt | None = Field(None, ge=1)
    first_page: StrictInt = 1


def _check_topic(value: str) -> str:
    problem = mqtt_filter_problem(value)
    if problem is not None:
        raise _error("bad_topic", f"{value!r} is not an MQTT topic filter: {problem}")
    return value


def _check_subject(value: str) -> str:
    problem = nats_subject_problem(value)
    if problem is not None:
        raise _error("bad_subject", f"{value!r} is not a NATS subject: {problem}")
    return value


def _check_field_path(value: str) -> str:
    try:
        parse_field_path(value)
    except ValueError as exc:
        raise _error("bad_field_path", str(exc)) from None
    return value


Topic = Annotated[str, AfterValidator(_check_topic), WithJsonSchema({
    "type": "string", "minLength": 1,
    "description": "An MQTT topic filter: levels split by /, + one level, # the rest"})]
Subject = Annotated[str, AfterValidator(_check_subject), WithJsonSchema({
    "type": "string", "minLength": 1,
    "description": "A NATS subject: tokens split by ., * one token, > the rest"})]
FieldPathText = Annotated[str, AfterValidator(_check_field_path), WithJsonSchema({
    "type": "string", "pattern": r"^(payload(\..+)?|\$(topic|subject)(\[-?[0-9]+\])?)$",
    "description": "payload.a.b (a member of the JSON payload), $topic or $topic[N]"})]


class StreamBatch(Spec):
    """How much of a stream one version takes (mqtt and nats sources)."""

    seconds: StrictInt = Field(
        10, ge=1, description="A run reads for at most this long; ferry up starts one this "
        "often")
    rows: StrictInt = Field(
        10_000, ge=1, le=1_000_000, description="A run takes at most this many messages (the "
        "rest wait for the next run; mqtt: at most 65535)")


class SourceDataset(DatasetCommon):
    table: str | None = None
    query: str | None = None
    path: str | None = Field(None, description="files: a glob overriding the source's path")
    format: Literal["csv", "parquet", "jsonl"] | None = None
    null_values: list[str] | None = Field(
        None, description="files: unquoted CSV texts read as NULL (default: none, text stays "
        "text)")
    endpoint: str | None = Field(None, description="http: path appended to the source url")
    records: str | None = Field(
        None, description="http: dotted path of the record list in the response"
    )
    pagination: Pagination | None = None
    topic: Topic | None = Field(None, description="mqtt: the topic filter (default: the "
                                "source's topic)")
    subject: Subject | None = Field(None, description="nats: the subject (default: the "
                                    "source's subject)")
    fields: dict[ColumnName, FieldPathText] = Field(
        default_factory=dict, description="mqtt, nats: where a column's value comes from, "
        "e.g. temp: payload.t.c or device: $topic[1] (default: the payload member named as "
        "the column)")
    batch: StreamBatch | None = Field(None, description="mqtt, nats: how much one version "
                                      "takes (default seconds: 10, rows: 10000)")
    capture: Literal["snapshot", "incremental", "cdc"] = "snapshot"
    cursor: ColumnName | None = None
    lag: Duration | None = None
    schedule: Cron | None = None


class SourceBase(Spec):
    description: str | None = None
    network: Label | None = None
    datasets: dict[Name, SourceDataset] = Field(default_factory=dict)


class PostgresSource(SourceBase):
    kind: Literal["postgres"]
    dsn: Url
    password: Secret | None = None


class MysqlSource(SourceBase):
    kind: Literal["mysql"]
    dsn: Url
    password: Secret | None = None


class SqliteSource(SourceBase):
    kind: Literal["sqlite"]
    path: str


class DuckdbSource(SourceBase):
    kind: Literal["duckdb"]
    path: str


class FilesSource(SourceBase):
    kind: Literal["files"]
    path: str = Field(description="A glob; the format comes from the extension or format:")
    format: Literal["csv", "parquet", "jsonl"] | None = None
    null_values: list[str] = Field(
        default_factory=list,
        description="Unquoted CSV texts read as NULL (default: none, text stays text)")


class HttpSource(SourceBase):
    kind: Literal["http"]
    url: str
    headers: Annotated[dict[str, str], WithJsonSchema({
        "type": "object", "additionalProperties": {"type": "string"},
        "patternProperties": {f"^{patterns.any_case(h)}$": {
            "type": "string", "pattern": patterns.SECRET_REFERENCE}
            for h in patterns.SECRET_HEADERS},
    })] = Field(default_factory=dict)
    token: Secret | None = Field(None, description="Sent as Authorization: Bearer <token>")


class MqttSource(SourceBase):
    """A broker's topics: each dataset keeps a persistent session (QoS 1) that holds what
    arrives between runs."""

    kind: Literal["mqtt"]
    url: Url = Field(description="mqtt://host:port, or mqtts://host:port for TLS")
    topic: Topic | None = Field(None, description="The topic filter of datasets that give none")
    username: str | None = None
    password: Secret | None = None
    ca_file: str | None = Field(None, description="mqtts: the CA certificate(s) (PEM) the "
                                "broker's certificate is checked against (default: the "
                                "system's); relative to the model directory")
    client_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+$", max_length=64)] = (
        Field("ferry", description="Prefix of each dataset's session: "
              "<client_id>-<team>.<dataset>"))


class NatsSource(SourceBase):
    """JetStream subjects: each dataset reads through a durable pull consumer."""

    kind: Literal["nats"]
    url: Url = Field(description="nats://host:port (tls://host:port for TLS)")
    subject: Subject | None = Field(None, description="The subject of datasets that give none")
    stream: Annotated[str, StringConstraints(pattern=r"^[^.*>\s]+$")] | None = Field(
        None, description="The JetStream stream holding the subjects (default: the stream "
        "whose subjects take the dataset's subject)")
    username: str | None = None
    password: Secret | None = None
    token: Secret | None = None
    durable: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+$", max_length=64)] = (
        Field("ferry", description="Prefix of each dataset's durable consumer: "
              "<durable>_<team>_<dataset>"))


SOURCE_KINDS = ("postgres", "mysql", "sqlite", "duckdb", "files", "http", "mqtt", "nats")
STREAM_SOURCE_KINDS = ("mqtt", "nats")
"""Sources read as a stream of messages: every run takes what arrived, one version."""


def _kind(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("kind")
        return kind if isinstance(kind, str) else None
    return getattr(value, "kind", None)


Source = Annotated[
    Annotated[PostgresSource, Tag("postgres")]
    | Annotated[MysqlSource, Tag("mysql")]
    | Annotated[SqliteSource, Tag("sqlite")]
    | Annotated[DuckdbSource, Tag("duckdb")]
    | Annotated[FilesSource, Tag("files")]
    | Annotated[HttpSource, Tag("http")]
    | Annotated[MqttSource, Tag("mqtt")]
    | Annotated[NatsSource, Tag("nats")],
    Discriminator(
        _kind,
        custom_error_type="bad_kind",
        custom_error_message="kind must be one of: " + ", ".join(SOURCE_KINDS),
    ),
]


class Transformer(DatasetCommon):
    inputs: list[Ref] = Field(min_length=1)
    mask: dict[Ref, list[ColumnName]] = Field(
        default_factory=dict,
        description="Input columns the transformer gets as a keyed hash, per input "
        "reference (how a transformer in another zone may read restricted or pii columns)",
    )
    sql: str | None = None
    sql_file: Annotated[str, WithJsonSchema({
        "type": "string", "not": {"pattern": patterns.RELATIVE_PATH_OUTSIDE}})] | None = None
    python: Annotated[str, _pattern(patterns.PYTHON_FUNCTION)] | None = Field(
        None, description="module:function, Arrow in, Arrow out")
    trigger: Trigger = "on_change"

    @model_validator(mode="after")
    def _one_body(self) -> Transformer:
        given = [k for k in ("sql", "sql_file", "python") if getattr(self, k) is not None]
        if len(given) != 1:
            raise _error(
                "transformer_body",
                "a transformer needs exactly one of sql, sql_file or python "
                f"(got {', '.join(given) or 'none'})",
            )
        return self


# --- consumers ---------------------------------------------------------------------------


class SinkBase(Spec):
    network: Label | None = None


class PostgresSink(SinkBase):
    kind: Literal["postgres"]
    dsn: Url
    password: Secret | None = None
    schema_: str | None = Field(None, alias="schema")


class MysqlSink(SinkBase):
    kind: Literal["mysql"]
    dsn: Url
    password: Secret | None = None
    schema_: str | None = Field(None, alias="schema")


class SqliteSink(SinkBase):
    kind: Literal["sqlite"]
    path: str


DUCKDB_STORAGE_VERSION = "v1.1.0"
"""The storage format a new DuckDB sink file is written in unless its sink says otherwise:
DuckDB 1.1 and every later release open it, and it holds every type the sink creates."""


_STORAGE_VERSION = r"^(v\d+\.\d+\.\d+|latest)$"
VALUE_RULES: dict[str, str] = {
    _STORAGE_VERSION: "a DuckDB release as vX.Y.Z (e.g. v1.1.0), or latest",
}
"""What each pattern of a value that is no name allows, in words (for ``shape``)."""


class DuckdbSink(SinkBase):
    kind: Literal["duckdb"]
    path: str
    schema_: str | None = Field(None, alias="schema")
    storage_version: Annotated[str, StringConstraints(pattern=_STORAGE_VERSION)] = (
        DUCKDB_STORAGE_VERSION)


class ParquetSink(SinkBase):
    kind: Literal["parquet"]
    path: str


class ShareSink(SinkBase):
    """No delivery: the consumer reads its needs over Delta Sharing (``ferry share``)."""

    kind: Literal["share"]

    @model_validator(mode="after")
    def _no_network(self) -> ShareSink:
        if self.network is not None:
            raise _error("share_network", "a share sink has no network: Delta Sharing serves "
                         "it from the store (remove network:)")
        return self


SINK_KINDS = ("postgres", "mysql", "sqlite", "duckdb", "parquet", "share")

Sink = Annotated[
    Annotated[PostgresSink, Tag("postgres")]
    | Annotated[MysqlSink, Tag("mysql")]
    | Annotated[SqliteSink, Tag("sqlite")]
    | Annotated[DuckdbSink, Tag("duckdb")]
    | Annotated[ParquetSink, Tag("parquet")]
    | Annotated[ShareSink, Tag("share")],
    Discriminator(
        _kind,
        custom_error_type="bad_kind",
        custom_error_message="kind must be one of: " + ", ".join(SINK_KINDS),
    ),
]


def _need_shorthand(value: Any) -> Any:
    """``- sales.orders`` is short for ``- {ref: sales.orders}``."""
    return {"ref": value} if isinstance(value, str) else value


class Need(Spec):
    ref: Ref
    mode: Literal["replace", "merge", "append", "history"] = "replace"
    freshness: Duration | None = None
    columns: list[ColumnName] | None = None
    where: str | None = None
    table: str | None = None
    mask: list[ColumnName] = Field(default_factory=list)


class WebhookNotify(Spec):
    webhook: Url
    secret: Secret | None = None


class NatsNotify(Spec):
    nats: str = Field(description="JetStream subject")
    server: Url = Field("nats://127.0.0.1:4222", description="The NATS server, JetStream on.")


def _notify_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        keys: Any = type(value).model_fields
    elif isinstance(value, dict):
        keys = value
    else:
        return None  # e.g. a string: pydantic reports bad_notify
    for kind in ("webhook", "nats"):
        if kind in keys:
            return kind
    return None


Notify = Annotated[
    Annotated[WebhookNotify, Tag("webhook")] | Annotated[NatsNotify, Tag("nats")],
    Discriminator(
        _notify_kind,
        custom_error_type="bad_notify",
        custom_error_message="a notify target has webhook: (and secret:) or nats:",
    ),
]


class Consumer(Spec):
    description: str | None = None
    sink: Sink
    datasets: list[
        Annotated[Need, BeforeValidator(_need_shorthand, json_schema_input_type=Need | Ref)]
    ] = Field(min_length=1)
    notify: list[Notify] = Field(default_factory=list)
    platform: Label | None = None


# --- teams and the whole ecosystem -------------------------------------------------------


class TeamFile(Spec):
    """One ``teams/<team>/*.yaml`` file; a team may split its definitions over several."""

    team: Name
    zone: Label | None = None
    owners: list[Email] | None = Field(None, min_length=1)
    description: str | None = None
    sources: dict[Name, Source] = Field(default_factory=dict)
    transformers: dict[Name, Transformer] = Field(default_factory=dict)
    consumers: dict[Name, Consumer] = Field(default_factory=dict)


class Team(Spec):
    """A team with all its files merged."""

    zone: Label
    owners: list[str] = Field(min_length=1)
    description: str | None = None
    sources: dict[Name, Source] = Field(default_factory=dict)
    transformers: dict[Name, Transformer] = Field(default_factory=dict)
    consumers: dict[Name, Consumer] = Field(default_factory=dict)


class Ecosystem(EcosystemFile):
    """The whole model: ``ferry.yaml`` plus every team."""

    teams: dict[Name, Team] = Field(default_factory=dict)


AnySource = (PostgresSource | MysqlSource | SqliteSource | DuckdbSource | FilesSource | HttpSource
             | MqttSource | NatsSource)
AnySink = PostgresSink | MysqlSink | SqliteSink | DuckdbSink | ParquetSink | ShareSink
AnyCheck = (
    NotNullCheck | UniqueCheck | AcceptedValuesCheck | RangeCheck | RowCountCheck | FreshnessCheck
)
