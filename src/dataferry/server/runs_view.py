"""A run as one caller may see it: the public summary for everyone, the detail and the
failed checks' example rows only as far as the caller may read the rows.

The API (``GET /runs/{id}``) and the run page both show a run through ``run_view``, so
they cannot disagree. The rules are ``authz.can_see_run_detail`` (the full error text
and log lines) and ``authz.row_access`` on each failed check's dataset (its examples):

- unrestricted rows (admins, the owning team): the examples as stored;
- a consumer's grant: only the grant's columns, its masked columns replaced by the
  keyed hash its deliveries and the rows API use;
- a grant with a ``where`` filter: no examples (an example row may be one the filter
  hides, and the stored example holds too few columns to test it against);
- no rows (viewers, other teams): counts only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dataferry.broker.failure import CheckExamples
from dataferry.engine.context import RunContext
from dataferry.engine.deliver import mask_key, mask_value
from dataferry.metadata.runs import RunDetail
from dataferry.server import authz
from dataferry.server.principal import Principal

ROW_NUMBER = "row"
"""The example key of a dataset without a primary key: a row's number, not a value."""

HIDDEN = ("the detail may quote rows: it is shown to admins and the team that owns the "
          "job (for a delivery, also the team that owns the dataset)")


@dataclass(frozen=True)
class CheckView:
    """One failed check as the caller may see it."""

    dataset: str
    check: str
    column: str | None
    failing_rows: int
    summary: str
    examples: list[dict[str, Any]] | None
    """None: hidden from this caller (``examples_note`` says why)."""
    examples_note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "check": self.check, "column": self.column,
                "failing_rows": self.failing_rows, "summary": self.summary,
                "examples": self.examples, "examples_note": self.examples_note}


@dataclass(frozen=True)
class LogView:
    at: str
    level: str
    message: str


@dataclass(frozen=True)
class RunView:
    """``error`` is always the public summary; ``detail`` the full text when the caller
    may see it (None otherwise, with ``detail_hidden`` saying one exists)."""

    error: str | None
    detail: str | None
    detail_hidden: bool
    checks: list[CheckView] = field(default_factory=list)
    log: list[LogView] = field(default_factory=list)


def run_view(context: RunContext, principal: Principal, run: RunDetail) -> RunView:
    """``run`` (from ``RunHistory.get_run``) as ``principal`` may see it."""
    allowed = authz.can_see_run_detail(context.index, principal, run.job_id)
    recorded = context.runs.error_detail(run.id) if run.has_detail else None
    detail = recorded.detail if recorded is not None and allowed else None
    log = [LogView(line.at.isoformat(), line.level,
                   line.detail if allowed and line.detail else line.message)
           for line in run.log]
    checks = [check_view(context, principal, CheckExamples.from_json(item))
              for item in (recorded.checks if recorded is not None else ())]
    return RunView(run.error, detail, run.has_detail and not allowed, checks, log)


def check_view(context: RunContext, principal: Principal, check: CheckExamples) -> CheckView:
    """A failed check with its examples as ``principal``'s access to the rows shows them."""
    access = authz.row_access(context.index, principal, check.dataset)
    base = (check.dataset, check.check, check.column, check.failing_rows, check.summary)
    if not check.examples:
        return CheckView(*base, [])
    if access is None:
        return CheckView(*base, None, "you may not see the rows of " + check.dataset)
    if access.unrestricted:
        return CheckView(*base, [dict(example) for example in check.examples])
    if access.where is not None:
        return CheckView(*base, None, f"your access to {check.dataset} ({access.reason}) is "
                                      "filtered by a where condition the examples cannot be "
                                      "tested against")
    entry = context.index.datasets.get(check.dataset)
    columns = set(entry.spec.columns) if entry is not None else set()
    shown = set(access.columns)
    key = mask_key(context.store.home) if access.mask else b""
    examples = []
    for example in check.examples:
        visible: dict[str, Any] = {}
        for name, value in example.items():
            if name == ROW_NUMBER and name not in columns:
                visible[name] = value
            elif name in shown:
                visible[name] = mask_value(key, value) if name in access.mask else value
        examples.append(visible)
    return CheckView(*base, examples, f"as {access.reason}: its columns only"
                                      + (", masked columns masked" if access.mask else ""))
