"""The runs pages: the run history, one run with its log, and starting a job.

Starting a job goes through ``api.start_job`` — the same authorization check, audit entry
and background thread as ``POST /api/v1/runs`` — so the button cannot do anything the
API would refuse. The job's run row appears a moment after the thread starts; the form
waits briefly for it so the browser lands on the new run's page, where the status
refreshes itself until the run ends.

A run's error and log are shown as ``runs_view`` lets the caller see them, as the API
does: the public summary for everyone, the detail and check examples as far as the
caller may read the rows.
"""

from __future__ import annotations

import time
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from dataferry.server import authz
from dataferry.server.api import start_job
from dataferry.server.runs_view import HIDDEN, run_view
from dataferry.server.ui.pages import Offset, pager
from dataferry.server.ui.web import (
    CheckedForm,
    PageError,
    PagePrincipal,
    context_of,
    redirect,
    render,
)

router = APIRouter(include_in_schema=False)
PAGE = 50
ACTIVE = ("queued", "running")
WAIT_FOR_RUN_SECONDS = 3.0
RunId = Annotated[int, Path(ge=1, le=2**31 - 1)]  # ids are SQL INTEGERs: larger ones can't exist


@router.get("/runs", response_class=HTMLResponse)
def runs_page(request: Request, principal: PagePrincipal, offset: Offset = 0,
              failed: bool = False,
              job: Annotated[str | None, Query(max_length=300)] = None) -> HTMLResponse:
    """The run history, newest first; only failures, or one job's runs, on request."""
    items = context_of(request).runs.list_runs(limit=PAGE + 1, offset=offset,
                                               failed_only=failed, job_id=job or None)
    shown = items[:PAGE]
    filters = {"failed": "1" if failed else "", "job": job or ""}
    return render(request, "runs.html", {
        "runs": shown, "failed": failed, "job": job or "",
        "pager": pager("/runs", filters, offset, PAGE, len(shown), None,
                       more=len(items) > PAGE)}, section="runs")


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, principal: PagePrincipal, run_id: RunId) -> HTMLResponse:
    """One run: status, counts, versions read and written, its log; a retry button for
    those who may start its job, once it has ended."""
    context = context_of(request)
    run = context.runs.get_run(run_id)
    if run is None:
        raise PageError(404, f"There is no run {run_id}.")
    return render(request, "run.html", {
        "run": run, "view": run_view(context, principal, run), "hidden_note": HIDDEN,
        "active": run.status in ACTIVE,
        "can_retry": run.status not in ACTIVE
        and authz.can_trigger(context.index, principal, run.job_id)}, section="runs")


@router.post("/runs")
def trigger_run(request: Request, principal: PagePrincipal,
                form: CheckedForm) -> RedirectResponse:
    """Start a job now; on to its new run (or to the job's runs if it is slow to show)."""
    job_id = form.one("job").strip()
    if not job_id:
        raise PageError(400, "Say which job to run.")
    runs = context_of(request).runs
    before = runs.last_run(job_id)
    start_job(request, principal, job_id)  # 400/403 become error pages
    deadline = time.monotonic() + WAIT_FOR_RUN_SECONDS
    while time.monotonic() < deadline:
        latest = runs.last_run(job_id)
        if latest is not None and (before is None or latest.id > before.id):
            return redirect(f"/runs/{latest.id}")
        time.sleep(0.05)
    return redirect(f"/runs?job={quote(job_id, safe='')}")
