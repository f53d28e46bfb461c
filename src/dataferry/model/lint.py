"""Whole-model checks: references, types, keys, cursors, secrets, cycles.

Governance (zones, classifications, approvals) is in ``policy``; backwards compatibility
against a git ref in ``compat``. Every check adds findings to the report; none raises.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from dataferry.errors import ModelError
from dataferry.model.findings import Path, Report, suggest, suggest_ref
from dataferry.model.graph import DatasetEntry, ModelIndex
from dataferry.model.load import LoadedModel
from dataferry.model.spec import (
    AcceptedValuesCheck,
    DatasetCommon,
    FilesSource,
    FreshnessCheck,
    HttpSource,
    MysqlSink,
    MysqlSource,
    NotNullCheck,
    PostgresSink,
    PostgresSource,
    RangeCheck,
    Transformer,
    UniqueCheck,
    WebhookNotify,
)
from dataferry.model.streamcheck import check_stream_dataset, check_stream_source
from dataferry.model.types import TypeParseError, parse_type

SECRET_REF = re.compile(r"\$\{(env|file):[^}]+\}\Z")
_DSN_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@:]*:([^/@]+)@", re.IGNORECASE)
_SECRET_HEADERS = ("authorization", "x-api-key", "api-key", "x-auth-token", "cookie")
_PYTHON_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*\Z")


@functools.lru_cache(maxsize=1024)
def where_columns(where: str) -> tuple[str, ...] | str:
    """The columns a ``where:`` expression uses, or the parse error (a string)."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(where, read="duckdb")
    except sqlglot.errors.SqlglotError as exc:  # ParseError, or TokenError: 'unclosed
        return (str(exc).splitlines() or [type(exc).__name__])[0]
    if tree is None:
        return "it is empty"
    if not isinstance(tree, exp.Condition):  # e.g. "1 = 1; drop table t", "select ..."
        return f"it is a {type(tree).__name__.lower()} statement, not a condition"
    if tree.find(exp.Select, exp.Subquery, exp.Table) is not None:
        # A filter sees the row it filters, nothing else: a subquery could read other
        # columns (past a mask) or files on the machine that runs the delivery.
        return "subqueries and tables are not allowed, only the row's own columns"
    return tuple(dict.fromkeys(column.name for column in tree.find_all(exp.Column)))


def safe_where(where: str) -> str:
    """``where`` as the single condition it parses to (re-rendered from the parse tree,
    so nothing can follow it); raises ``ModelError`` when it is not one."""
    import sqlglot

    problem = where_columns(where)
    if isinstance(problem, str):
        raise ModelError(f"where {where!r} is not a condition on the row's columns: {problem}")
    return sqlglot.parse_one(where, read="duckdb").sql(dialect="duckdb")


class Linter:
    """Runs the whole-model checks of MODEL.md over a loaded model."""

    def __init__(self, loaded: LoadedModel, *, sql: bool = True) -> None:
        """``sql=False`` leaves out the checks that parse SQL (consumers' ``where:``);
        ``check_wheres`` runs them for one consumer."""
        assert loaded.ecosystem is not None
        self.sql = sql
        self.loaded = loaded
        self.eco = loaded.ecosystem
        self.report: Report = loaded.report
        self.index = ModelIndex(self.eco)

    def run(self) -> None:
        self.check_ecosystem()
        for entry in self.index.datasets.values():
            self.check_dataset(entry)
        for team_name, team in self.eco.teams.items():
            self.check_team(team_name)
            for name, source in team.sources.items():
                self.check_source(team_name, name, source)
            for name, transformer in team.transformers.items():
                self.check_transformer(team_name, name, transformer)
            for name in team.consumers:
                self.check_consumer(team_name, name)
        self.check_cycles()

    # --- helpers -------------------------------------------------------------------------

    def is_known_invalid(self, ref: str) -> bool:
        team = ref.partition(".")[0]
        return ref in self.loaded.invalid or f"{team}.*" in self.loaded.invalid

    def resolve(self, ref: str, path: Path) -> DatasetEntry | None:
        """The dataset ``ref`` names, or None after reporting ``unknown-reference``."""
        entry = self.index.datasets.get(ref)
        if entry is None and not self.is_known_invalid(ref):
            team = ref.partition(".")[0]
            if team not in self.eco.teams and f"{team}.*" not in self.loaded.invalid:
                hint = suggest(team, self.eco.teams, "the teams")
                self.report.add("unknown-reference", f"{ref!r}: no team named {team!r}{hint}",
                                path)
            else:
                # Datasets left out as invalid still exist: list them too.
                dropped = (r for r in self.loaded.invalid if not r.endswith(".*"))
                hint = suggest_ref(ref, [*self.index.datasets, *dropped])
                self.report.add("unknown-reference", f"unknown dataset {ref!r}{hint}", path)
        return entry

    def check_platform(self, name: str | None, path: Path) -> None:
        if name is not None and name not in self.eco.platforms:
            hint = suggest(name, self.eco.platforms, "the platforms")
            self.report.add("unknown-reference", f"unknown platform {name!r}{hint}", path)

    def check_network(self, network: str | None, path: Path) -> None:
        if network is not None and network not in self.index.networks:
            hint = suggest(network, self.index.networks, "the networks")
            self.report.add(
                "unknown-reference",
                f"no platform runs in network {network!r}{hint}"
                f" (add one in ferry.yaml: platforms: {{name: {{network: {network}}}}})",
                path,
            )

    def check_columns(self, entry_columns: Iterable[str], names: Iterable[str], where: str,
                      path: Path) -> None:
        known = list(entry_columns)
        for index, column in enumerate(names):
            if column not in known:
                hint = suggest(column, known, "its columns")
                self.report.add("unknown-reference", f"{where}: unknown column {column!r}{hint}",
                                (*path, index))

    def secret(self, value: str | None, what: str, path: Path) -> None:
        if value is not None and not SECRET_REF.match(value):
            self.report.add(
                "plaintext-secret",
                f"{what} is written as a literal; use ${{env:NAME}} or ${{file:/path}} so it "
                "never lands in git",
                path,
            )

    def dsn(self, dsn: str, what: str, path: Path,
            instead: str = "give password: ${env:NAME}") -> None:
        """A password written into a URL (``scheme://user:password@host``) is a literal
        secret too; ``instead`` says where it belongs."""
        match = _DSN_PASSWORD.match(dsn)
        if match and not SECRET_REF.match(match.group(1)):
            self.report.add(
                "plaintext-secret",
                f"{what} contains a password; remove it from the URL and {instead}",
                path,
            )

    # --- the checks ----------------------------------------------------------------------

    def check_ecosystem(self) -> None:
        eco = self.eco
        if eco.openlineage is not None:
            self.secret(eco.openlineage.api_key, "openlineage api_key",
                        ("openlineage", "api_key"))
            self.dsn(eco.openlineage.url, "openlineage url", ("openlineage", "url"),
                     "give api_key: ${env:NAME}")
        self.check_platform(eco.defaults.platform, ("defaults", "platform"))
        for name, zone in eco.zones.items():
            for index, platform in enumerate(zone.platforms or []):
                self.check_platform(platform, ("zones", name, "platforms", index))
        for name, spec in eco.platforms.items():
            if spec.engine == "spark" and spec.network is not None:
                self.report.add("invalid-field",
                                f"platform {name}: a spark platform cannot run in a network",
                                ("platforms", name, "network"))

    def check_team(self, team_name: str) -> None:
        team = self.eco.teams[team_name]
        if team.zone not in self.eco.zones:
            hint = suggest(team.zone, self.eco.zones, "the zones")
            self.report.add(
                "unknown-reference",
                f"team {team_name}: unknown zone {team.zone!r}{hint}",
                ("teams", team_name, "zone"),
            )
        for index, owner in enumerate(team.owners):
            if "@" not in owner:
                self.report.add("invalid-field",
                                f"team {team_name}: owner {owner!r} is not an email address",
                                ("teams", team_name, "owners", index))

    def check_dataset(self, entry: DatasetEntry) -> None:
        spec, path, ref = entry.spec, entry.path, entry.ref
        for name, column in spec.columns.items():
            try:
                parse_type(column.type)
            except TypeParseError as exc:
                self.report.add("unknown-type", f"{ref} column {name}: {exc}",
                                (*path, "columns", name, "type"))
        columns = spec.columns
        self.check_columns(columns, spec.primary_key, f"{ref} primary_key", (*path, "primary_key"))
        for name in spec.primary_key:
            key_column = columns.get(name)
            # Only an explicit `nullable: true`: a key column is stored not nullable anyway.
            if (key_column is not None and key_column.nullable
                    and "nullable" in key_column.model_fields_set):
                self.report.add("invalid-field",
                                f"{ref} column {name} is part of the primary key, so it cannot "
                                "be nullable; remove nullable: true (every row needs a key)",
                                (*path, "columns", name, "nullable"))
        self.check_columns(columns, spec.partition_by, f"{ref} partition_by",
                           (*path, "partition_by"))
        self.check_platform(spec.platform, (*path, "platform"))
        for index, team in enumerate(spec.allowed_consumers or []):
            if team not in self.eco.teams:
                self.report.add("unknown-reference",
                                f"{ref} allowed_consumers: unknown team {team!r}"
                                f"{suggest(team, self.eco.teams, 'the teams')}",
                                (*path, "allowed_consumers", index))
        self.check_checks(entry)
        if not entry.is_transformer:
            self.check_capture(entry)

    def check_checks(self, entry: DatasetEntry) -> None:
        spec, ref = entry.spec, entry.ref
        for index, check in enumerate(spec.checks):
            at: Path = (*entry.path, "checks", index)
            if isinstance(check, NotNullCheck):
                self.check_columns(spec.columns, check.not_null, f"{ref} not_null check",
                                   (*at, "not_null"))
            elif isinstance(check, UniqueCheck):
                self.check_columns(spec.columns, check.unique, f"{ref} unique check",
                                   (*at, "unique"))
                if not spec.primary_key:
                    self.report.add("missing-primary-key",
                                    f"{ref} has a unique check but no primary_key; declare "
                                    "primary_key: [...]", at)
            elif isinstance(check, AcceptedValuesCheck | RangeCheck | FreshnessCheck):
                body = getattr(check, next(iter(type(check).model_fields)))
                self.check_columns(spec.columns, [body.column], f"{ref} check",
                                   (*at, next(iter(type(check).model_fields)), "column"))

    def check_capture(self, entry: DatasetEntry) -> None:
        dataset, source, path, ref = entry.dataset, entry.source, entry.path, entry.ref
        assert source is not None
        database = source.kind in ("postgres", "mysql", "sqlite", "duckdb")
        if database and (dataset.table is None) == (dataset.query is None):
            self.report.add("invalid-field",
                            f"{ref}: give exactly one of table: or query: ({source.kind} source)",
                            path)
        if not database:
            for key in ("table", "query"):
                if getattr(dataset, key) is not None:
                    self.report.add("invalid-field",
                                    f"{ref}: {key}: does not apply to a {source.kind} source",
                                    (*path, key), key=True)
        if not isinstance(source, HttpSource):
            for key in ("endpoint", "records", "pagination"):
                if getattr(dataset, key) is not None:
                    self.report.add("invalid-field",
                                    f"{ref}: {key}: applies only to an http source",
                                    (*path, key), key=True)
        if not isinstance(source, FilesSource):
            for key in ("path", "format", "null_values"):
                if getattr(dataset, key) is not None:
                    self.report.add("invalid-field",
                                    f"{ref}: {key}: applies only to a files source",
                                    (*path, key), key=True)
        check_stream_dataset(self.report, entry)
        if source.kind in ("mqtt", "nats"):
            return  # a stream has no capture or cursor (streamcheck says so)
        if dataset.capture == "incremental" and dataset.cursor is None and not isinstance(
            source, FilesSource
        ):
            self.report.add("missing-cursor",
                            f"{ref}: incremental capture needs cursor: (a column that grows "
                            "with every change, e.g. updated_at)", (*path, "capture"))
        if dataset.cursor is not None:
            self.check_columns(dataset.columns, [dataset.cursor], f"{ref} cursor",
                               (*path,))
        if dataset.capture == "cdc":
            if not dataset.primary_key:
                self.report.add("missing-primary-key",
                                f"{ref}: cdc capture needs a primary_key", (*path, "capture"))
            if source.kind not in ("postgres", "mysql"):
                self.report.add("invalid-field",
                                f"{ref}: cdc capture needs a postgres or mysql source",
                                (*path, "capture"))

    def check_source(self, team_name: str, name: str, source: object) -> None:
        path: Path = ("teams", team_name, "sources", name)
        what = f"source {team_name}.{name}"
        self.check_network(getattr(source, "network", None), (*path, "network"))
        if isinstance(source, PostgresSource | MysqlSource):
            self.secret(source.password, f"{what} password", (*path, "password"))
            self.dsn(source.dsn, f"{what}'s dsn", (*path, "dsn"))
        check_stream_source(self.report, source, what, path, self.secret, self.dsn)
        if isinstance(source, HttpSource):
            self.secret(source.token, f"{what} token", (*path, "token"))
            for header, value in source.headers.items():
                if header.lower() in _SECRET_HEADERS:
                    self.secret(value, f"{what} header {header}", (*path, "headers", header))

    def check_transformer(self, team_name: str, name: str, transformer: Transformer) -> None:
        path: Path = ("teams", team_name, "transformers", name)
        for index, ref in enumerate(transformer.inputs):
            self.resolve(ref, (*path, "inputs", index))
        for ref, columns in transformer.mask.items():
            what = f"transformer {team_name}.{name} mask"
            if ref not in transformer.inputs:
                self.report.add("unknown-reference",
                                f"{what}: {ref!r} is not one of its inputs"
                                f"{suggest(ref, transformer.inputs, 'its inputs')}",
                                (*path, "mask", ref), key=True)
            elif (entry := self.index.datasets.get(ref)) is not None:
                self.check_columns(entry.spec.columns, columns, f"{what} {ref}",
                                   (*path, "mask", ref))
        if transformer.python is not None and not _PYTHON_REF.match(transformer.python):
            self.report.add("invalid-field",
                            f"transformer {team_name}.{name}: python must be module:function, "
                            f"got {transformer.python!r}", (*path, "python"))
        if transformer.sql_file is not None and (
            transformer.sql_file.startswith("/") or ".." in transformer.sql_file.split("/")
        ):
            self.report.add("invalid-field",
                            f"transformer {team_name}.{name}: sql_file must be a path inside "
                            "the team's folder", (*path, "sql_file"))

    def check_consumer(self, team_name: str, name: str) -> None:
        consumer = self.eco.teams[team_name].consumers[name]
        path: Path = ("teams", team_name, "consumers", name)
        what = f"consumer {team_name}.{name}"
        sink = consumer.sink
        self.check_network(sink.network, (*path, "sink", "network"))
        self.check_platform(consumer.platform, (*path, "platform"))
        if isinstance(sink, PostgresSink | MysqlSink):
            self.secret(sink.password, f"{what} sink password", (*path, "sink", "password"))
            self.dsn(sink.dsn, f"{what}'s dsn", (*path, "sink", "dsn"))
        for index, target in enumerate(consumer.notify):
            notify: Path = (*path, "notify", index)
            if isinstance(target, WebhookNotify):
                self.secret(target.secret, f"{what} webhook secret", (*notify, "secret"))
                self.dsn(target.webhook, f"{what}'s webhook", (*notify, "webhook"),
                         "sign requests with secret: ${env:NAME} instead")
            else:
                self.dsn(target.server, f"{what}'s NATS server", (*notify, "server"),
                         "keep credentials out of the model")
        tables: dict[str, int] = {}
        for index, need in enumerate(consumer.datasets):
            at: Path = (*path, "datasets", index)
            table = need.table or need.ref.partition(".")[2]
            if table in tables:
                self.report.add("duplicate-name",
                                f"{what}: two datasets are delivered into table {table!r}; "
                                "give one a table:", (*at, "table" if need.table else "ref"))
            tables[table] = index
            entry = self.resolve(need.ref, (*at, "ref"))
            if entry is None:
                continue
            self.check_need(what, entry, need, at)

    def check_need(self, what: str, entry: DatasetEntry, need: object, at: Path) -> None:
        from dataferry.model.spec import Need

        assert isinstance(need, Need)
        spec: DatasetCommon = entry.spec
        self.check_columns(spec.columns, need.columns or [], f"{what} {need.ref}", (*at, "columns"))
        delivered = need.columns if need.columns is not None else list(spec.columns)
        for index, column in enumerate(need.mask):
            if column not in delivered:
                known = column in spec.columns
                self.report.add(
                    "unknown-reference",
                    f"{what} {need.ref}: mask column {column!r} "
                    + ("is not among the delivered columns" if known else
                       f"does not exist{suggest(column, spec.columns, 'its columns')}"),
                    (*at, "mask", index),
                )
        if need.mode in ("merge", "history") and not spec.primary_key:
            self.report.add("missing-primary-key",
                            f"{what}: {need.mode} mode needs a primary key, but {need.ref} has "
                            "none (ask its owners to declare primary_key)", (*at, "mode"))
        if need.where is not None and self.sql:
            self.check_where(what, need.ref, need.where, list(spec.columns), (*at, "where"))

    def check_wheres(self, consumer_ref: str) -> None:
        """The ``where:`` of each need of consumer ``consumer_ref`` ("team.name")."""
        team_name, _, name = consumer_ref.partition(".")
        consumer = self.eco.teams[team_name].consumers[name]
        for index, need in enumerate(consumer.datasets):
            entry = self.index.datasets.get(need.ref)
            if need.where is not None and entry is not None:
                self.check_where(f"consumer {consumer_ref}", need.ref, need.where,
                                 list(entry.spec.columns),
                                 ("teams", team_name, "consumers", name, "datasets", index,
                                  "where"))

    def check_where(self, what: str, ref: str, where: str, columns: list[str], at: Path) -> None:
        parsed = where_columns(where)
        if isinstance(parsed, str):
            self.report.add("invalid-field",
                            f"{what} {ref}: where is not a SQL expression ({parsed})", at)
            return
        for column in parsed:
            if column not in columns:
                self.report.add("unknown-reference",
                                f"{what} {ref}: where uses unknown column {column!r}"
                                f"{suggest(column, columns, 'its columns')}", at)

    def check_cycles(self) -> None:
        graph: dict[str, list[str]] = {}
        for team_name, team in self.eco.teams.items():
            for name, transformer in team.transformers.items():
                graph[f"{team_name}.{name}"] = [r for r in transformer.inputs]
        state: dict[str, int] = {}  # 1 = on the stack, 2 = done
        reported: set[frozenset[str]] = set()
        for start in graph:
            if state.get(start):
                continue
            stack: list[tuple[str, int]] = [(start, 0)]
            trail: list[str] = [start]
            state[start] = 1
            while stack:
                node, position = stack[-1]
                edges = graph.get(node, [])
                if position < len(edges):
                    stack[-1] = (node, position + 1)
                    nxt = edges[position]
                    if nxt not in graph:
                        continue
                    if state.get(nxt) == 1:
                        cycle = [*trail[trail.index(nxt):], nxt]
                        key = frozenset(cycle)
                        if key not in reported:
                            reported.add(key)
                            owner, name = cycle[0].split(".")
                            self.report.add("cycle", "transformers depend on each other in a "
                                            "cycle: " + " -> ".join(cycle),
                                            ("teams", owner, "transformers", name, "inputs"))
                    elif not state.get(nxt):
                        state[nxt] = 1
                        trail.append(nxt)
                        stack.append((nxt, 0))
                else:
                    state[node] = 2
                    trail.pop()
                    stack.pop()
