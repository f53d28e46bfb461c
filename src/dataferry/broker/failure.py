"""How a failed run is told: a public summary without row values, and the detail apart.

Everyone who may see a run (every logged-in user, the event stream, webhooks, NATS,
OpenLineage) reads its *public* text; only those who may read the job's rows read its
*detail* (``server.authz.can_see_run_detail``). The public text is value-free by
construction, never by scrubbing: it is the error's ``FerryError.public`` text, set
only where a message is built from the model and metadata, or else a generic summary
made without the message at all (the job, the kind of error, a SQLSTATE a driver
reports). A failed check's examples are kept as data (``CheckExamples``), so each reader
can be shown them as their own view of the rows allows.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any

from dataferry.errors import (
    AuthError,
    FerryError,
    MetadataError,
    ModelError,
    SecretError,
    SinkError,
    SourceError,
    StoreError,
)

_CATEGORIES: tuple[tuple[type[FerryError], str], ...] = (
    (SourceError, "reading from the source failed"),
    (SinkError, "writing to the sink failed"),
    (SecretError, "a secret could not be resolved"),
    (StoreError, "the store refused the data"),
    (MetadataError, "the metadata database refused an operation"),
    (ModelError, "the model could not be loaded"),
    (AuthError, "authentication failed"),
)


@dataclass(frozen=True)
class CheckExamples:
    """One failed quality check of a run: what failed, and example rows as JSON objects
    (the primary key, or ``row`` number, and the checked column's value)."""

    dataset: str
    check: str
    column: str | None
    failing_rows: int
    summary: str
    """The check's public text (dataset, check, column, counts)."""
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "check": self.check, "column": self.column,
                "failing_rows": self.failing_rows, "summary": self.summary,
                "examples": self.examples}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckExamples:
        return cls(str(data.get("dataset") or ""), str(data.get("check") or ""),
                   data.get("column"), int(data.get("failing_rows") or 0),
                   str(data.get("summary") or ""), list(data.get("examples") or []))


@dataclass(frozen=True)
class RunFailure:
    """A failed attempt: ``public`` for everyone, ``detail`` and ``checks`` for those who
    may read the rows (``detail`` None when it says no more than ``public``)."""

    public: str
    detail: str | None = None
    checks: tuple[CheckExamples, ...] = ()


def describe_failure(job_id: str, error: BaseException) -> RunFailure:
    """The public summary and the detail of ``error`` ending job ``job_id``."""
    if isinstance(error, FerryError):
        full = str(error)
        public = error.public if error.public is not None else _generic(job_id, error)
        checks = _checks(error)
        return RunFailure(public, None if full == public and not checks else full, checks)
    where = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    place = f" ({where.filename}:{where.lineno})" if where is not None else ""
    detail = (f"internal error {type(error).__name__}: {error}{place}; rerun with --debug")
    public = (f"{job_id}: internal error ({type(error).__name__}); this is a bug: the "
              "details are shown to the owning team and admins")
    return RunFailure(public, detail)


def _generic(job_id: str, error: FerryError) -> str:
    """A summary made without the error's message, which may quote rows."""
    category = next((text for kind, text in _CATEGORIES if isinstance(error, kind)),
                    "the job failed")
    names = [type(error).__name__]
    state = _sqlstate(error)
    if state:
        names.append(f"SQLSTATE {state}")
    return (f"{job_id}: {category} ({', '.join(names)}); the details may hold row "
            "values and are shown to the owning team and admins")


def _sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE a driver error under ``error`` reports, if any (a code, never a value)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        state = getattr(current, "sqlstate", None)
        if isinstance(state, str) and state.isalnum() and len(state) == 5:
            return state
        current = current.__cause__ or current.__context__
    return None


def _checks(error: FerryError) -> tuple[CheckExamples, ...]:
    from dataferry.store.quality import QualityError

    if not isinstance(error, QualityError):
        return ()
    return tuple(CheckExamples(f.dataset, f.check, f.column, f.failing_rows,
                               f.public or f"check {f.check} failed", list(f.examples))
                 for f in error.failures)
