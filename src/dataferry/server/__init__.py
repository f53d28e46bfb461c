"""``ferry serve``: the REST API, the web UI and (later) sharing, on FastAPI.

Modules: ``principal`` (who is asking: the contract between authentication and the
rest), ``auth/`` (passwords, TOTP, tokens, rate limits, the login routes), ``authz``
(what a principal may see, from the applied model), ``catalog`` (datasets, lineage,
freshness as the API and UI show them), ``app`` (the application factory).
"""
