"""Round trips: any valid model -> YAML files (or Python DSL) -> load -> the same model.

A hypothesis strategy builds random *valid* ecosystems (every source, sink, check and
notify kind; awkward strings everywhere) that are also lint-clean, so the loaded copy must
equal the original exactly (key order and value types included) and ``ferry check`` must
pass on the written files.
"""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from dataferry.model.check import check_model
from dataferry.model.export import export_files, export_stream, write_model
from dataferry.model.load import load_model
from dataferry.model.patterns import BOOLEAN_WORD
from dataferry.model.spec import Ecosystem, EcosystemFile
from dataferry.model.types import (
    PRIMITIVE_NAMES,
    DataType,
    Decimal,
    ListType,
    MapType,
    Primitive,
    String,
    StructType,
    format_type,
)
from dataferry.model.yamlfile import parse_yaml

SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- strings -----------------------------------------------------------------------------

AWKWARD = [
    "NO", "no", "Yes", "on", "OFF", "y", "n", "0o17", "0x1F", "0b101", "1e3", "1_000", "012",
    "+1", "-0", ".5", "1.", "-.inf", ".NaN", "~", "null", "Null", "true", "False", "<<", "",
    " ", "  lead", "trail  ", " both ", "a: b", "a:b", "key: value # not a comment", "#", "# c",
    "a #b", "'", '"', "''", "it's \"quoted\"", "\\", "\\n", "%TAG", "@at", "`tick", "!tag",
    "!!str x", "&anchor", "*alias", "|", ">", "- item", "? key", "{a: 1}", "[1, 2]", ",", "---",
    "...", "=", "12:30", "2024-01-01", "2024-01-01T00:00:00Z", "ünïcödé ✓ 🚀 中文",
    "multi\nline", "multi\nline\n", "trailing newline\n", "\n\nleading", "  indented\n  block",
    "line one  \nline two", "tab\there", "\ttab first", "cr\rlf", "crlf\r\n", "nel\x85x",
    "ls\u2028ps\u2029", "bom\ufeff", "nul\x00", "bell\x07", "del\x7f", "decimal(12,2)",
    "list<a,b", "map<string,int64>", "\u201a", "low‚quote with decimal(1,2)",
    "select a, b from t where x = 'y'",
]
"""Strings YAML likes to read as something else, or that need quoting or escaping."""

awkward = st.sampled_from(AWKWARD)
texts = st.one_of(
    awkward,
    st.text(max_size=20),
    st.lists(st.one_of(awkward, st.text(max_size=6)), min_size=1, max_size=4).map("".join),
)
opt_texts = st.none() | texts

NAME_WORDS = ["null", "true", "false", "yes", "no", "on", "off", "y", "n", "nan", "inf", "type",
              "kind", "ref", "team", "ecosystem", "columns", "checks", "datasets", "notify",
              "sources", "transformers", "consumers", "local"]
names = st.one_of(st.sampled_from(NAME_WORDS), st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True))
labels = st.one_of(st.sampled_from(NAME_WORDS), st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True))
column_names = st.one_of(
    st.sampled_from([*NAME_WORDS, "True", "NULL", "No", "Y", "ON", "_", "__", "id", "ID"]),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True),
)
emails = st.from_regex(r"[a-z0-9._+-]{1,8}@[a-z0-9-]{1,8}\.example", fullmatch=True)
env_names = st.from_regex(r"[A-Z][A-Z0-9_]{0,10}", fullmatch=True)
secrets = st.one_of(
    env_names.map(lambda n: "${env:" + n + "}"),
    st.from_regex(r"/[a-z0-9/._-]{1,20}", fullmatch=True).map(lambda p: "${file:" + p + "}"),
)
durations = st.lists(
    st.tuples(st.integers(1, 999), st.sampled_from("smhdw")), min_size=1, max_size=3
).map(lambda parts: "".join(f"{n}{unit}" for n, unit in parts))
crons = st.one_of(
    st.sampled_from(["*/15 * * * *", "0 * * * *", "0 3 * * 1-5", "30 2 1 * *", "@daily",
                     "@hourly", "5,35 */2 * * MON"]),
    st.builds(lambda m, h: f"{m} {h} * * *", st.integers(0, 59), st.integers(0, 23)),
)
scalars = st.one_of(
    texts,
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.booleans(),
)
classifications = st.sampled_from(["public", "internal", "confidential", "restricted"])

# --- types -------------------------------------------------------------------------------

_primitives = st.sampled_from(sorted(PRIMITIVE_NAMES)).map(Primitive)
_decimals = st.integers(1, 76).flatmap(lambda p: st.integers(0, p).map(lambda s: Decimal(p, s)))
_strings = st.integers(1, 2**31 - 1).map(String)
_keys: st.SearchStrategy[DataType] = st.one_of(_primitives, _decimals, _strings)
_fields = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)


def data_types(depth: int = 2) -> st.SearchStrategy[DataType]:
    """Any column type, nested at most ``depth`` levels."""
    if depth == 0:
        return _keys
    inner = data_types(depth - 1)
    return st.one_of(
        _keys,
        inner.map(ListType),
        st.builds(MapType, _keys, inner),
        st.lists(st.tuples(_fields, inner), min_size=1, max_size=3,
                 unique_by=lambda f: f[0].lower()).map(lambda fs: StructType(tuple(fs))),
    )


type_texts = data_types().map(format_type)

# --- the model ---------------------------------------------------------------------------

Draw = Any
Raw = dict[str, Any]


def maybe(draw: Draw, raw: Raw, key: str, strategy: st.SearchStrategy[Any]) -> None:
    """Set ``raw[key]`` to a drawn value, or leave the key out (its default)."""
    if draw(st.booleans()):
        raw[key] = draw(strategy)


def subset(draw: Draw, items: list[str], min_size: int = 0) -> list[str]:
    if not items:
        return []
    return draw(st.lists(st.sampled_from(items), unique=True, min_size=min_size,
                         max_size=len(items)))


def draw_ecosystem_file(draw: Draw) -> Raw:
    raw: Raw = {"ecosystem": draw(names)}
    maybe(draw, raw, "description", texts)
    maybe(draw, raw, "home", st.sampled_from([".state", "var/ferry", "../elsewhere", "/abs/dir"]))
    maybe(draw, raw, "store", st.sampled_from(["s3://bucket/prefix", ".state/store", "store"]))
    maybe(draw, raw, "metadata", st.sampled_from(["sqlite:///ferry.db",
                                                  "postgresql://meta@db/ferry"]))
    platforms: Raw = {}
    for name in draw(st.lists(labels, unique=True, max_size=3)):
        platform: Raw = {}
        engine = draw(st.sampled_from(["duckdb", "spark"]))
        if engine == "spark" or draw(st.booleans()):
            platform["engine"] = engine
        maybe(draw, platform, "description", texts)
        if engine == "spark":
            maybe(draw, platform, "master", st.sampled_from(["local[2]", "spark://m:7077"]))
        maybe(draw, platform, "min_rows", st.integers(0, 10**12))
        if engine == "duckdb":
            maybe(draw, platform, "network", labels)
        platforms[name] = platform
    if platforms or draw(st.booleans()):
        raw["platforms"] = platforms
    known = list(EcosystemFile(ecosystem="x", platforms=platforms).platforms)
    default = draw(st.sampled_from(known))
    defaults: Raw = {}
    if default != "local":
        defaults["platform"] = default
    maybe(draw, defaults, "freshness", durations)
    maybe(draw, defaults, "lag", durations)
    if defaults or draw(st.booleans()):
        raw["defaults"] = defaults
    zones: Raw = {}
    for name in draw(st.lists(labels, unique=True, min_size=1, max_size=3)):
        zone: Raw = {}
        maybe(draw, zone, "description", texts)
        maybe(draw, zone, "export_classifications",
              st.lists(classifications, unique=True, max_size=4))
        maybe(draw, zone, "export_pii", st.booleans())
        if draw(st.booleans()):
            others = [p for p in known if p != default]
            zone["platforms"] = draw(st.permutations([default, *subset(draw, others)]))
        zones[name] = zone
    raw["zones"] = zones
    maybe(draw, raw, "admins", st.lists(st.one_of(emails, texts), max_size=3))
    return raw


class World:
    """What the generator knows while it builds teams: zones, platforms, datasets."""

    def __init__(self, eco: EcosystemFile) -> None:
        self.eco = eco
        self.networks = {p.network: n for n, p in eco.platforms.items() if p.network}
        self.datasets: dict[str, Raw] = {}  # ref -> raw dataset (source or transformer)
        self.zone_of: dict[str, str] = {}  # team -> zone
        self.receivers: dict[str, set[str]] = {}  # ref -> teams that receive it

    def allowed_platforms(self, team: str) -> list[str]:
        zone = self.eco.zones[self.zone_of[team]]
        return list(zone.platforms) if zone.platforms is not None else list(self.eco.platforms)

    def off_spark(self, draw: Draw, raw: Raw, team: str) -> None:
        """A Python transformer runs on DuckDB (spark-unsupported otherwise): a platform
        its zone allows with engine duckdb, set when its own or the default is Spark."""
        platforms = self.eco.platforms
        placed = raw.get("platform") or self.eco.defaults.platform
        if platforms[placed].engine != "spark":
            return
        duckdb = [p for p in self.allowed_platforms(team)
                  if platforms[p].engine == "duckdb" and platforms[p].network is None]
        if duckdb:
            raw["platform"] = draw(st.sampled_from(duckdb))
        else:  # a zone that allows Spark only: a SQL file instead (unread, so unchecked)
            del raw["python"]
            raw["sql_file"] = "x.sql"

    def off_network(self, draw: Draw, raw: Raw, team: str) -> None:
        """A Python or masked transformer does not run on a gateway agent
        (agent-unsupported): a platform outside any network its zone allows, when its own
        or the default is in one; a model where none is allowed is not drawn."""
        platforms = self.eco.platforms
        placed = raw.get("platform") or self.eco.defaults.platform
        allowed = self.allowed_platforms(team)
        if platforms[placed].network is None or placed not in allowed:
            return
        if "python" not in raw and not any(raw.get("mask", {}).values()):
            return
        outside = [p for p in allowed if platforms[p].network is None
                   and ("python" not in raw or platforms[p].engine == "duckdb")]
        assume(outside)
        raw["platform"] = draw(st.sampled_from(outside))

    def allowed_networks(self, team: str) -> list[str]:
        allowed = self.allowed_platforms(team)
        return [n for n, p in self.networks.items() if p in allowed]

    def placement(self, draw: Draw, raw: Raw, team: str, *, network: bool) -> None:
        """A platform and/or network the team's zone allows (or none: the default)."""
        if draw(st.booleans()):
            raw["platform"] = draw(st.sampled_from(self.allowed_platforms(team)))
        networks = self.allowed_networks(team)
        if network and networks and draw(st.booleans()):
            raw["network"] = draw(st.sampled_from(networks))


def draw_columns(draw: Draw) -> Raw:
    columns: Raw = {}
    for name in draw(st.lists(column_names, unique=True, min_size=1, max_size=5)):
        column: Raw = {"type": draw(type_texts)}
        maybe(draw, column, "nullable", st.booleans())
        maybe(draw, column, "classification", classifications)
        maybe(draw, column, "pii", st.booleans())
        maybe(draw, column, "description", texts)
        columns[name] = column
    return columns


def draw_checks(draw: Draw, columns: list[str], has_key: bool) -> list[Raw]:
    kinds = ["not_null", "accepted_values", "range", "row_count", "freshness"]
    if has_key:
        kinds.append("unique")
    checks: list[Raw] = []
    for kind in draw(st.lists(st.sampled_from(kinds), max_size=4)):
        column = draw(st.sampled_from(columns))
        if kind in ("not_null", "unique"):
            checks.append({kind: subset(draw, columns, min_size=1)})
        elif kind == "accepted_values":
            values = draw(st.lists(scalars, min_size=1, max_size=4))
            checks.append({kind: {"column": column, "values": values}})
        elif kind == "range":
            bound = st.one_of(st.integers(-(10**6), 10**6), st.floats(allow_nan=False), texts)
            body: Raw = {"column": column}
            which = draw(st.sampled_from([("min",), ("max",), ("min", "max")]))
            for key in which:
                body[key] = draw(bound)
            checks.append({kind: body})
        elif kind == "row_count":
            body = {}
            maybe(draw, body, "min", st.integers(0, 10**9))
            maybe(draw, body, "max", st.integers(0, 10**9))
            checks.append({kind: body})
        else:
            checks.append({kind: {"column": column, "max_age": draw(durations)}})
    return checks


def draw_dataset_common(draw: Draw, world: World, team: str) -> Raw:
    columns = draw_columns(draw)
    names_ = list(columns)
    raw: Raw = {}
    maybe(draw, raw, "description", texts)
    key = subset(draw, names_)
    if key:
        raw["primary_key"] = key
    maybe(draw, raw, "classification", classifications)
    maybe(draw, raw, "status", st.sampled_from(["production", "development"]))
    maybe(draw, raw, "deprecated", st.one_of(  # "no" is a text, refused as a message
        st.booleans(), texts.filter(lambda t: not re.fullmatch(BOOLEAN_WORD, t))))
    maybe(draw, raw, "version", st.integers(1, 99))
    maybe(draw, raw, "retention", st.integers(1, 1000))
    partition = subset(draw, names_)
    if partition:
        raw["partition_by"] = partition
    if draw(st.booleans()):
        world.placement(draw, raw, team, network=False)
    raw["columns"] = columns
    checks = draw_checks(draw, names_, bool(key))
    if checks:
        raw["checks"] = checks
    return raw


def draw_source(draw: Draw, world: World, team: str, dataset_names: list[str]) -> Raw:
    kind = draw(st.sampled_from(["postgres", "mysql", "sqlite", "duckdb", "files", "http"]))
    raw: Raw = {"kind": kind}
    maybe(draw, raw, "description", texts)
    world.placement(draw, raw, team, network=True)
    raw.pop("platform", None)  # sources have a network, not a platform
    if kind in ("postgres", "mysql"):
        user, host, db = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True),
                                       min_size=3, max_size=3))
        raw["dsn"] = f"{kind}://{user}@{host}.internal:5432/{db}"
        maybe(draw, raw, "password", secrets)
    elif kind in ("sqlite", "duckdb"):
        raw["path"] = draw(st.one_of(texts.filter(bool), st.just("data/ledger.db")))
    elif kind == "files":
        raw["path"] = draw(st.sampled_from(["/data/sensors/*.csv", "in/*.parquet", "ü dir/*"]))
        maybe(draw, raw, "format", st.sampled_from(["csv", "parquet", "jsonl"]))
    else:
        raw["url"] = draw(st.sampled_from(["https://api.example/v1", "http://h:8080/x?y=1#z"]))
        headers: Raw = {}
        for header in draw(st.lists(st.one_of(texts, st.just("Authorization")), unique=True,
                                    max_size=3)):
            secret = header.lower() in ("authorization", "x-api-key", "api-key",
                                        "x-auth-token", "cookie")
            headers[header] = draw(secrets if secret else texts)
        if headers:
            raw["headers"] = headers
        maybe(draw, raw, "token", secrets)
    datasets: Raw = {}
    for name in dataset_names:
        dataset = draw_dataset_common(draw, world, team)
        columns = list(dataset["columns"])
        if kind in ("postgres", "mysql", "sqlite", "duckdb"):
            dataset[draw(st.sampled_from(["table", "query"]))] = draw(texts)
        elif kind == "files":
            maybe(draw, dataset, "path", texts)
            maybe(draw, dataset, "format", st.sampled_from(["csv", "parquet", "jsonl"]))
        else:
            maybe(draw, dataset, "endpoint", texts)
            maybe(draw, dataset, "records", texts)
            if draw(st.booleans()):
                pagination: Raw = {}
                maybe(draw, pagination, "next_link", texts)
                maybe(draw, pagination, "page_param", texts)
                maybe(draw, pagination, "size_param", texts)
                maybe(draw, pagination, "size", st.integers(1, 10_000))
                maybe(draw, pagination, "first_page", st.integers(-5, 5))
                dataset["pagination"] = pagination
        captures = ["snapshot", "incremental"]
        if kind in ("postgres", "mysql") and dataset.get("primary_key"):
            captures.append("cdc")
        maybe(draw, dataset, "capture", st.sampled_from(captures))
        if (dataset.get("capture") == "incremental" and kind != "files") or draw(st.booleans()):
            dataset["cursor"] = draw(st.sampled_from(columns))
        maybe(draw, dataset, "lag", durations)
        maybe(draw, dataset, "schedule", crons)
        datasets[name] = dataset
        world.datasets[f"{team}.{name}"] = dataset
    if datasets or draw(st.booleans()):
        raw["datasets"] = datasets
    return raw


def draw_transformer(draw: Draw, world: World, team: str, name: str) -> Raw:
    zone = world.zone_of[team]
    # Inputs from the team's own zone only (cross-zone inputs need masks the policy decides:
    # test_transformer_policy.py) and only datasets that exist already, so there are no cycles.
    candidates = [ref for ref in world.datasets if world.zone_of[ref.partition(".")[0]] == zone]
    raw = draw_dataset_common(draw, world, team)
    raw["inputs"] = subset(draw, candidates, min_size=1)
    masked = {ref: subset(draw, list(world.datasets[ref]["columns"]), min_size=1)
              for ref in subset(draw, raw["inputs"])}
    if masked:
        raw["mask"] = masked
    # DuckDB reads no decimal over 38 digits: ferry check refuses SQL over such an input.
    readable = not any(int(digits) > 38
                       for ref in raw["inputs"]
                       for column in world.datasets[ref]["columns"].values()
                       for digits in re.findall(r"decimal\s*\(\s*(\d+)", str(column)))
    # DuckDB's names ignore case: a query cannot yield both "true" and "True".
    readable = readable and len({c.lower() for c in raw["columns"]}) == len(raw["columns"])
    body = draw(st.sampled_from(["sql", "sql_file", "python"] if readable else ["python"]))
    if body == "sql":
        # A query that binds (ferry check binds it) with every declared column: NULL fits
        # any type. The awkward text rides along in a comment.
        comment = draw(texts).replace("*/", "* /").replace("/*", "/ *")
        columns = ", ".join(f'null as "{column}"' for column in raw["columns"])
        raw["sql"] = f"select {columns} /* {comment} */"
    elif body == "sql_file":
        raw["sql_file"] = draw(st.sampled_from(["x.sql", "sql/ü nicode.sql", "a/b/c.sql"]))
    else:
        raw["python"] = draw(st.sampled_from(["mod:fn", "pkg.mod:transform", "_m._n:_f"]))
        world.off_spark(draw, raw, team)
    maybe(draw, raw, "trigger", st.one_of(st.just("on_change"), crons))
    for ref in raw["inputs"]:
        world.receivers.setdefault(ref, set()).add(team)
    world.datasets[f"{team}.{name}"] = raw
    return raw


def draw_need(draw: Draw, world: World, team: str, ref: str, table: str | None) -> Raw:
    dataset = world.datasets[ref]
    columns: Raw = dataset["columns"]
    raw: Raw = {"ref": ref}
    modes = ["replace", "append"] + (["merge", "history"] if dataset.get("primary_key") else [])
    maybe(draw, raw, "mode", st.sampled_from(modes))
    maybe(draw, raw, "freshness", durations)
    delivered = list(columns)
    if draw(st.booleans()):
        delivered = subset(draw, list(columns))
        raw["columns"] = delivered
    owner = ref.partition(".")[0]
    home, away = world.zone_of[owner], world.zone_of[team]
    required = []  # what the producer's zone does not export: only masked, never filtered
    if home != away:
        zone = world.eco.zones[home]
        for name, column in columns.items():
            level = column.get("classification") or dataset.get("classification", "internal")
            if level not in zone.export_classifications or (
                    column.get("pii") and not zone.export_pii):
                required.append(name)
    filterable = [c for c in delivered if c not in required]
    if filterable and draw(st.booleans()):
        column = draw(st.sampled_from(filterable))
        raw["where"] = draw(st.sampled_from([f'"{column}" IS NOT NULL',
                                             f'"{column}" = \'x: #y\'', "1 = 1"]))
    if table is not None:
        raw["table"] = table
    mask = subset(draw, delivered)
    mask += [c for c in delivered if c in required and c not in mask]
    if mask:
        raw["mask"] = mask
    world.receivers.setdefault(ref, set()).add(team)
    return raw


def draw_consumer(draw: Draw, world: World, team: str) -> Raw:
    kind = draw(st.sampled_from(["postgres", "mysql", "sqlite", "duckdb", "parquet"]))
    sink: Raw = {"kind": kind}
    if kind in ("postgres", "mysql"):
        sink["dsn"] = f"{kind}://loader@wh.internal/wh"
        maybe(draw, sink, "password", secrets)
    else:
        sink["path"] = draw(st.one_of(texts.filter(bool), st.just("out/wh.duckdb")))
    if kind in ("postgres", "mysql", "duckdb"):
        maybe(draw, sink, "schema", texts)
    raw: Raw = {}
    maybe(draw, raw, "description", texts)
    world.placement(draw, sink, team, network=True)
    if "platform" in sink:
        raw["platform"] = sink.pop("platform")
    sink_network = sink.pop("network", None)
    refs = draw(st.lists(st.sampled_from(sorted(world.datasets)), min_size=1, max_size=3))
    tables = draw(st.lists(texts.filter(bool), min_size=len(refs), max_size=len(refs), unique=True))
    used = {t for t in tables}
    needs = []
    for ref, table in zip(refs, tables, strict=True):
        # Deliver into an explicit table unless the dataset's own name is still free.
        own = ref.partition(".")[2]
        if own not in used and draw(st.booleans()):
            used.add(own)
            needs.append(draw_need(draw, world, team, ref, None))
        else:
            needs.append(draw_need(draw, world, team, ref, table))
    if sink_network is not None:  # masked needs too: the hub derives them for the agent
        sink["network"] = sink_network
    raw["sink"] = sink
    raw["datasets"] = needs
    notify = []
    for kind in draw(st.lists(st.sampled_from(["webhook", "nats"]), max_size=3)):
        if kind == "webhook":
            target: Raw = {"webhook": draw(st.sampled_from(["https://hooks.internal/x",
                                                            "http://h/ü?a=b#c"]))}
            maybe(draw, target, "secret", secrets)
        else:
            target = {"nats": draw(st.sampled_from(["crm.datasets", "a.*.>", "x"]))}
        notify.append(target)
    if notify:
        raw["notify"] = notify
    return raw


def bind_transformers_to_consumer_masks(world: World, team: Raw) -> None:
    """A column every consumer of the team receiving an input masks may reach the team's
    transformers only masked (policy.transformer_masks): add it to their ``mask:``, as a
    user fixing the finding would (the drawn SQL reads every column)."""
    needs: dict[str, list[Raw]] = {}
    for consumer in team.get("consumers", {}).values():
        for need in consumer["datasets"]:
            needs.setdefault(need["ref"], []).append(need)
    for transformer in team.get("transformers", {}).values():
        for ref in transformer["inputs"]:
            masked: dict[str, bool] = {}  # column -> masked by every need delivering it
            for need in needs.get(ref, []):
                delivered = need["columns"] if "columns" in need else world.datasets[ref]["columns"]
                for column in delivered:
                    masked[column] = masked.get(column, True) and column in need.get("mask", [])
            required = [column for column, always in masked.items() if always]
            if required:
                masks = transformer.setdefault("mask", {})
                masks[ref] = list(dict.fromkeys([*masks.get(ref, []), *required]))


@st.composite
def ecosystems(draw: Draw) -> Ecosystem:
    """A random valid, lint-clean ecosystem."""
    raw = draw_ecosystem_file(draw)
    world = World(EcosystemFile.model_validate(raw))
    team_names = sorted(draw(st.lists(names, unique=True, min_size=1, max_size=4)))
    teams: dict[str, Raw] = {}
    for name in team_names:
        world.zone_of[name] = draw(st.sampled_from(list(world.eco.zones)))
        team: Raw = {"zone": world.zone_of[name], "owners": draw(st.lists(emails, min_size=1,
                                                                          max_size=3))}
        maybe(draw, team, "description", texts)
        teams[name] = team
    entity_names = {
        name: draw(st.lists(names, unique=True, max_size=5)) for name in team_names
    }
    split = {name: draw(st.integers(0, len(entity_names[name]))) for name in team_names}
    for name in team_names:  # sources first, so transformers may read any of them
        datasets = entity_names[name][: split[name]]
        sources: Raw = {}
        source_names = draw(st.lists(names, unique=True, min_size=1 if datasets else 0,
                                     max_size=3))
        for index, source in enumerate(source_names):
            mine = datasets[index::len(source_names)]
            sources[source] = draw_source(draw, world, name, mine)
        if sources:
            teams[name]["sources"] = sources
    for name in team_names:
        transformers = {
            t: draw_transformer(draw, world, name, t)
            for t in entity_names[name][split[name]:]
            if any(world.zone_of[r.partition(".")[0]] == world.zone_of[name]
                   for r in world.datasets)
        }
        if transformers:
            teams[name]["transformers"] = transformers
    for name in team_names:
        if world.datasets:
            consumers = {
                c: draw_consumer(draw, world, name)
                for c in draw(st.lists(names, unique=True, max_size=2))
            }
            if consumers:
                teams[name]["consumers"] = consumers
    for name in team_names:
        bind_transformers_to_consumer_masks(world, teams[name])
        for transformer in teams[name].get("transformers", {}).values():
            world.off_network(draw, transformer, name)
    for ref, dataset in world.datasets.items():
        if draw(st.booleans()):
            others = world.receivers.get(ref, set()) - {ref.partition(".")[0]}
            dataset["allowed_consumers"] = sorted(others | set(subset(draw, team_names)))
    return Ecosystem.model_validate({**raw, "teams": teams})


# --- comparing ---------------------------------------------------------------------------


def exact(value: Any) -> Any:
    """``value`` as nested lists that keep key order and value types (1 != 1.0 != True)."""
    if isinstance(value, BaseModel):
        return [type(value).__name__, [(k, exact(getattr(value, k))) for k in
                                       type(value).model_fields]]
    if isinstance(value, dict):
        return [(exact(k), exact(v)) for k, v in value.items()]
    if isinstance(value, list | tuple):
        return [exact(v) for v in value]
    return (type(value).__name__, value)


def assert_same(loaded: Ecosystem | None, original: Ecosystem) -> None:
    assert loaded is not None
    assert loaded == original
    assert exact(loaded) == exact(original)


# --- YAML --------------------------------------------------------------------------------


@SETTINGS
@given(ecosystems())
def test_yaml_round_trip(eco: Ecosystem) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_model(eco, root)
        loaded = load_model(root)
        assert [f for f in loaded.report.findings if f.severity == "error"] == []
        assert_same(loaded.ecosystem, eco)
        result = check_model(root)
        assert result.ok, [f.as_text() for f in result.findings]
        assert {f.code for f in result.findings} <= {"deprecated-dataset"}


@settings(SETTINGS, max_examples=30)
@given(ecosystems())
def test_export_stream_parses(eco: Ecosystem) -> None:
    files = export_files(eco)
    stream = export_stream(eco)
    documents = list(yaml.safe_load_all(stream))
    assert len(documents) == len(files)
    for (path, text), document in zip(files.items(), documents, strict=True):
        assert f"---\n# file: {path}\n" in stream
        assert document == parse_yaml(text).value


@SETTINGS
@given(ecosystems())
def test_export_is_stable(eco: Ecosystem) -> None:
    """Writing the loaded model again gives byte-identical files."""
    with tempfile.TemporaryDirectory() as tmp:
        write_model(eco, Path(tmp))
        loaded = load_model(Path(tmp)).ecosystem
        assert loaded is not None
        assert export_files(loaded) == export_files(eco)


# --- the Python DSL ----------------------------------------------------------------------


def py(value: Any) -> str:
    """``value`` as a Python literal (``repr`` writes infinity as ``inf``, not a literal)."""
    if isinstance(value, float) and math.isinf(value):
        return "float('inf')" if value > 0 else "-float('inf')"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{py(k)}: {py(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(py(v) for v in value) + "]"
    return repr(value)


def _call(function: str, positional: list[Any], fields: dict[str, Any]) -> str:
    args = [py(p) for p in positional] + [f"{k}={v}" for k, v in fields.items()]
    return f"{function}({', '.join(args)})"


def _columns(columns: dict[str, Any]) -> str:
    items = []
    for name, column in columns.items():
        rest = {k: py(v) for k, v in column.items() if k != "type"}
        items.append(_call("Column", [name, column["type"]], rest))
    return "[" + ", ".join(items) + "]"


def _dump(spec: BaseModel) -> dict[str, Any]:
    return spec.model_dump(mode="python", by_alias=True, exclude_defaults=True)


def dsl_file(name: str, team: Any) -> str:
    """A DSL file that builds ``team`` (a spec.Team) with Team/Column/Need."""
    lines = ["from dataferry.model import Column, Need, Team", ""]
    header = {k: py(v) for k, v in _dump(team).items()
              if k not in ("sources", "transformers", "consumers")}
    lines.append(f"team = {_call('Team', [name], header)}")
    for index, (source_name, source) in enumerate(team.sources.items()):
        fields = _dump(source)
        datasets = fields.pop("datasets", {})
        kind = fields.pop("kind")
        rest = {k: py(v) for k, v in fields.items()}
        lines.append(f"s{index} = team.source({py(source_name)}, kind={py(kind)}"
                     + "".join(f", {k}={v}" for k, v in rest.items()) + ")")
        for dataset_name, dataset in datasets.items():
            columns = _columns(dataset.pop("columns"))
            rest = {"columns": columns, **{k: py(v) for k, v in dataset.items()}}
            lines.append(f"s{index}.{_call('dataset', [dataset_name], rest)}")
    for transformer_name, transformer in team.transformers.items():
        fields = _dump(transformer)
        rest = {"columns": _columns(fields.pop("columns")),
                **{k: py(v) for k, v in fields.items()}}
        lines.append(f"team.{_call('transformer', [transformer_name], rest)}")
    for consumer_name, consumer in team.consumers.items():
        fields = _dump(consumer)
        needs = []
        for need in fields.pop("datasets"):
            ref = need.pop("ref")
            needs.append(_call("Need", [ref], {k: py(v) for k, v in need.items()}))
        rest = {"datasets": "[" + ", ".join(needs) + "]",
                **{k: py(v) for k, v in fields.items()}}
        lines.append(f"team.{_call('consumer', [consumer_name], rest)}")
    return "\n".join(lines) + "\n"


@settings(SETTINGS, max_examples=12)
@given(ecosystems())
def test_dsl_round_trip(eco: Ecosystem) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_model(eco, root)
        from_yaml = load_model(root)
        for name, team in eco.teams.items():
            (root / "teams" / name / f"{name}.yaml").unlink()
            (root / "teams" / name / "model.py").write_text(dsl_file(name, team),
                                                            encoding="utf-8")
        from_dsl = load_model(root)
        assert [f for f in from_dsl.report.findings if f.severity == "error"] == []
        assert_same(from_dsl.ecosystem, eco)
        assert from_yaml.ecosystem is not None
        assert_same(from_dsl.ecosystem, from_yaml.ecosystem)
        assert check_model(root).ok
