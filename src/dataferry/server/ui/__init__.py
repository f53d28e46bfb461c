"""The web UI of ``ferry serve``: server-rendered pages for people (docs/ui.md).

    web      sessions, CSRF, form parsing, security headers, HTML error pages
    routes   the router (``router``) and login/logout
    pages    catalog, teams, dataset and plan pages
    runs     run history, run page, starting a job
    admin    users and tokens (admins only)

Templates are Jinja2 (autoescaped) in ``templates/``; ``static/`` holds the one
stylesheet. There is no build step and no script from elsewhere.
"""

from __future__ import annotations

from dataferry.server.ui.routes import router
from dataferry.server.ui.web import STATIC, install_error_pages

__all__ = ["STATIC", "install_error_pages", "router"]
