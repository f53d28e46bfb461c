"""``ferry check``: load the model, run every check, compare against ``--base``."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path as FsPath

from dataferry.model.agentcheck import check_agents
from dataferry.model.compat import compare, load_base
from dataferry.model.findings import Finding
from dataferry.model.graph import ModelIndex
from dataferry.model.lint import Linter
from dataferry.model.load import LoadedModel, PieceCache, load_model
from dataferry.model.policy import check_policy, check_policy_sql
from dataferry.model.sparkcheck import check_spark
from dataferry.model.sqlcheck import check_transformer_sql


@dataclass
class CheckResult:
    """Everything ``ferry check`` prints."""

    loaded: LoadedModel
    findings: list[Finding]
    changed_teams: list[str] | None = None
    changed_files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    @property
    def errors(self) -> int:
        return sum(f.severity == "error" for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.severity == "warning" for f in self.findings)


def lint_model(loaded: LoadedModel, *, sql: bool = True) -> None:
    """Run the whole-model checks (references, policy, transformers' SQL bound against
    their inputs, ...) on a loaded model.

    ``sql=False`` leaves out the checks that parse or bind SQL (consumers' ``where:``,
    which columns transformers read, binding their queries on DuckDB): sqlglot's import
    and a second per thousand transformers. ``ferry run`` runs them with ``check_sql``
    for the consumers and transformers among its jobs only."""
    if loaded.ecosystem is None:
        return
    linter = Linter(loaded, sql=sql)
    linter.run()
    check_policy(loaded.ecosystem, linter.index, loaded.report, loaded.root, sql=sql)
    check_agents(linter.index, loaded.report)
    if sql:
        check_transformer_sql(loaded, linter.index)
        check_spark(loaded, linter.index)


def check_sql(loaded: LoadedModel, refs: Collection[str]) -> None:
    """The checks ``lint_model(sql=False)`` left out, for the consumers and transformers
    ``refs`` ("team.name") only."""
    if loaded.ecosystem is None or not refs:
        return
    linter = Linter(loaded)
    for ref in refs:
        if ref in linter.index.consumers:
            linter.check_wheres(ref)
    check_policy_sql(loaded.ecosystem, linter.index, loaded.report, loaded.root, refs)
    transformers = [ref for ref in refs if ref in linter.index.datasets]
    check_transformer_sql(loaded, linter.index, transformers)
    check_spark(loaded, linter.index, transformers)


def check_model(
    root: FsPath, *, base: str | None = None, author: str | None = None, connect: bool = False
) -> CheckResult:
    """Load and check the model at ``root``; with ``base``, also compatibility/ownership."""
    with _without_gc():
        cache: PieceCache = {}
        loaded = load_model(root, cache=cache)
        lint_model(loaded)
        if connect and loaded.ecosystem is not None and loaded.report.ok:
            from dataferry.model.connect import check_connections

            check_connections(loaded)
        result = CheckResult(loaded, [])
        if base is not None and loaded.ecosystem is not None:
            base_model, changed = load_base(loaded.root, base, cache)
            comparison = compare(
                loaded, base_model.ecosystem if base_model else None, changed, author
            )
            result.changed_teams = comparison.changed_teams
            result.changed_files = comparison.changed_files
        result.findings = loaded.report.sorted()
    return result


@contextlib.contextmanager
def _without_gc() -> Iterator[None]:
    """Loading a large model makes millions of long-lived objects and no cycles worth
    collecting; the cyclic GC would only walk them again and again (a third of the time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


__all__ = ["CheckResult", "ModelIndex", "check_model", "check_sql", "lint_model"]
