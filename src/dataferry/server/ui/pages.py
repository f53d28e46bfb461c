"""Catalog, team, dataset and plan pages: what the data is, who owns it, how it flows.

Metadata is for everyone logged in (it is a catalog: people find data they do not have
yet). Sample rows on the dataset page follow ``authz.row_access`` exactly as
``/api/v1/datasets/{ref}/rows`` does — the columns, filter and mask of the grant — and
reading them is audited the same way, since a page is just another way to read data.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from dataferry.server import authz, catalog
from dataferry.server.api import team_summaries
from dataferry.server.auth.dependency import client_ip, get_auth
from dataferry.server.lineage_svg import render_svg
from dataferry.server.principal import Principal
from dataferry.server.ui.web import (
    PageError,
    PagePrincipal,
    context_of,
    csp_nonce,
    render,
)

router = APIRouter(include_in_schema=False)
PAGE = 50
SAMPLE_ROWS = 10  # a taste of the data; the rows API pages through the rest
VERSIONS_SHOWN = 20
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
Text = Annotated[str | None, Query(max_length=200)]


def pager(path: str, filters: dict[str, str], offset: int, limit: int, shown: int,
          total: int | None, more: bool | None = None) -> dict[str, Any]:
    """Links to the previous and next page, keeping the filters; ``total`` if known."""
    query = {k: v for k, v in filters.items() if v}
    has_next = more if more is not None else total is not None and offset + limit < total

    def link(at: int) -> str:
        return f"{path}?{urlencode({**query, 'offset': at})}" if at else (
            f"{path}?{urlencode(query)}" if query else path)

    return {"prev": link(max(offset - limit, 0)) if offset > 0 else None,
            "next": link(offset + limit) if has_next else None,
            "first": offset + 1 if shown else 0, "last": offset + shown, "total": total}


@router.get("/", response_class=HTMLResponse)
def catalog_page(request: Request, principal: PagePrincipal, search: Text = None,
                 team: Text = None, offset: Offset = 0) -> HTMLResponse:
    """The catalog: every dataset, searched by ref, description and column names."""
    context = context_of(request)
    items, total = catalog.list_datasets(context.index, context.store, search, team or None,
                                         offset, PAGE)
    return render(request, "catalog.html", {
        "items": items, "total": total, "search": search or "", "team": team or "",
        "pager": pager("/", {"search": search or "", "team": team or ""}, offset, PAGE,
                       len(items), total)}, section="catalog")


@router.get("/teams", response_class=HTMLResponse)
def teams_page(request: Request, principal: PagePrincipal) -> HTMLResponse:
    return render(request, "teams.html", {"teams": team_summaries(context_of(request))},
                  section="teams")


@router.get("/teams/{name}", response_class=HTMLResponse)
def team_page(request: Request, principal: PagePrincipal, name: str) -> HTMLResponse:
    """One team: its owners, its data products (with their latest versions), consumers."""
    context = context_of(request)
    found = team_summaries(context, only=name)
    if not found:
        raise PageError(404, f"The model has no team {name!r}.")
    datasets, _ = catalog.list_datasets(context.index, context.store, None, name, 0,
                                        len(context.index.datasets) or 1)
    return render(request, "team.html", {
        "team": found[0], "datasets": datasets,
        "member": principal.member_of(name)}, section="teams")


def producer_job(kind: str, ref: str) -> str:
    """The job that publishes a dataset's versions."""
    return f"{'transform' if kind == 'transformer' else 'ingest'}:{ref}"


@router.get("/datasets/{ref}", response_class=HTMLResponse)
def dataset_page(request: Request, principal: PagePrincipal, ref: str) -> HTMLResponse:
    """Everything about one dataset, with sample rows only as its grant allows."""
    context = context_of(request)
    detail = catalog.dataset_detail(context.index, context.store, context.metadata, ref,
                                    root=context.root)
    if detail is None:
        raise PageError(404, f"The model has no dataset {ref!r}.")
    versions, version_count = catalog.versions(context.store, ref, 0, VERSIONS_SHOWN)
    graph = catalog.lineage(context.index, ref, None) or {"nodes": [], "edges": []}
    svg = render_svg(graph, f"Lineage of {ref}").replace(
        "<style>", f'<style nonce="{csp_nonce(request)}">', 1)
    job_id = producer_job(detail.kind, ref)
    return render(request, "dataset.html", {
        "d": asdict(detail), "versions": versions, "version_count": version_count,
        "lineage_svg": svg, "lineage": graph, "sample": _sample(request, principal, ref),
        "job_id": job_id, "can_run": authz.can_trigger(context.index, principal, job_id),
        "last_run": context.runs.last_run(job_id)}, section="catalog")


def _sample(request: Request, principal: Principal, ref: str) -> dict[str, Any]:
    """The first rows the principal may see, or why there are none (audited either way,
    as the rows API does)."""
    context = context_of(request)
    access = authz.row_access(context.index, principal, ref)
    audit = get_auth(request).audit
    if access is None:
        audit.record(principal.username, "rows.read", f"dataset:{ref}", "denied",
                     client_ip=client_ip(request), detail={"via": "web"})
        why = ("Viewers see the catalog, not rows." if principal.role == "viewer" else
               "Rows are for the owning team, admins and teams whose consumers receive this "
               "dataset.")
        return {"visible": False, "why": why}
    page = catalog.rows(context.store, ref, None, access, 0, SAMPLE_ROWS)
    if page is None:
        return {"visible": True, "reason": access.reason, "rows": [], "columns": [],
                "mask": list(access.mask), "where": access.where}
    audit.record(principal.username, "rows.read", f"dataset:{ref}@{page.version}", "success",
                 client_ip=client_ip(request),
                 detail={"offset": 0, "rows": len(page.rows), "access": access.reason,
                         "via": "web"})
    return {"visible": True, "reason": access.reason, "rows": page.rows,
            "columns": page.columns, "version": page.version, "more": page.more,
            "mask": list(access.mask), "where": access.where}


@router.get("/plan", response_class=HTMLResponse)
def plan_page(request: Request, principal: PagePrincipal) -> HTMLResponse:
    """What the broker will run and where (the model's plan), against the applied one."""
    from dataferry.broker.plan import plan_against_applied

    document, applied = plan_against_applied(context_of(request))
    return render(request, "plan.html", {
        "jobs": document["jobs"], "changes": document["changes"], "applied": applied,
        "shared": document["shared"]},
        section="plan")
