"""Reloading the model of a running ``ferry serve``: on SIGHUP, and on
``POST /api/v1/model/reload`` (admins).

The model directory is loaded and checked as ``ferry check`` checks it (statically: no
``--connect``). A model with errors is refused with its findings, and the running model
stays. Otherwise one assignment swaps ``app.state.context`` for a context of the new
model over the same store and metadata DB: every request reads it once, so it sees the
old model or the new one, never a mix. Authorization, the catalog, the plan and the web
UI follow from the next request, the scheduler from its next tick (a job running keeps
the model it started with). A change that moves the home, the store or the metadata DB
is refused too: restart the server for that. Every reload is in the audit log.
"""

from __future__ import annotations

import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from dataferry.engine.context import RunContext
from dataferry.errors import FerryError
from dataferry.model.findings import Finding
from dataferry.server import catalog
from dataferry.server.auth import Auth
from dataferry.server.auth.dependency import AdminPrincipal, client_ip, get_auth

router = APIRouter()
_RELOADING = threading.Lock()  # one reload at a time: the second one loads what is there then


@dataclass(frozen=True)
class Reload:
    """What a reload did: ``reloaded`` (the new model is served), its findings (warnings
    only when reloaded), and why it was refused when that is not a finding."""

    reloaded: bool
    findings: list[Finding] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    refused: str | None = None

    @property
    def errors(self) -> int:
        return sum(f.severity == "error" for f in self.findings)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reloaded": self.reloaded, **self.counts,
                               "errors": self.errors,
                               "warnings": sum(f.severity == "warning" for f in self.findings),
                               "findings": [f.as_json() for f in self.findings]}
        if self.refused is not None:
            out["refused"] = self.refused
        return out

    def summary(self) -> str:
        if self.reloaded:
            return (f"model reloaded: {self.counts['teams']} teams, {self.counts['datasets']} "
                    f"datasets, {self.counts['consumers']} consumers")
        why = self.refused or f"{self.errors} error(s) in the model"
        return f"model reload refused ({why}); the running model stays"


def reload_model(app: FastAPI) -> Reload:
    """Load and check the model again from its directory; serve it when it has no errors."""
    from dataferry.model.check import lint_model
    from dataferry.model.load import load_model

    with _RELOADING:
        current: RunContext = app.state.context
        try:
            loaded = load_model(current.root)
        except FerryError as exc:  # ferry.yaml gone, the directory moved
            return Reload(False, refused=str(exc))
        lint_model(loaded)
        findings = loaded.report.sorted()
        if loaded.ecosystem is None or not loaded.report.ok:
            return Reload(False, findings)
        try:
            context = current.with_model(loaded)
        except FerryError as exc:
            return Reload(False, findings, refused=str(exc))
        catalog.prepare(context.index)  # its search index: not on a request's time
        app.state.context = context
        scheduler = getattr(app.state, "scheduler", None)
        if scheduler is not None:
            scheduler.follow(context)
        index = context.index
        counts = {"teams": len(context.ecosystem.teams), "datasets": len(index.datasets),
                  "consumers": len(index.consumers)}
        return Reload(True, findings, counts)


def _audit(auth: Auth, actor: str, result: Reload, ip: str | None = None) -> None:
    auth.audit.record(actor, "model.reload", "model", "success" if result.reloaded else "failure",
                      client_ip=ip, detail={"errors": result.errors, **result.counts}
                      | ({"refused": result.refused} if result.refused else {}))


@router.post("/model/reload", responses={422: {"description": "the model has errors: "
                                               "refused with its findings"}})
def reload(request: Request, principal: AdminPrincipal) -> JSONResponse:
    """Admins: load and check the model's files again and serve the new model; a model
    with errors is refused (422, with its findings) and the running one stays."""
    result = reload_model(request.app)
    _audit(get_auth(request), principal.username, result, client_ip(request))
    return JSONResponse(result.as_json(), status_code=200 if result.reloaded else 422)


def reload_on_sighup(app: FastAPI) -> None:
    """Reload the model when the process gets SIGHUP, reporting on stderr. (The reload
    runs in a thread: it takes as long as ``ferry check``, and requests go on meanwhile.)"""

    def reload_now() -> None:
        result = reload_model(app)
        _audit(app.state.auth, "signal:SIGHUP", result)
        lines = [result.summary()]
        lines += [f.as_text() for f in result.findings if f.severity == "error"]
        sys.stderr.write("".join(f"{line}\n" for line in lines))
        sys.stderr.flush()

    def on_signal(signum: int, frame: object) -> None:
        threading.Thread(target=reload_now, name="ferry-model-reload", daemon=True).start()

    signal.signal(signal.SIGHUP, on_signal)
