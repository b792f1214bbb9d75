"""The ingest API (`/manage/v1/`): the customer's own systems write content with a token.

A JSON API on the web process. Every write goes through the admin's own
validation, outbox, publishing and audit (see entries.py, batch.py,
imports.py); openapi.py serves the contract built from the same schemas the
views validate with. Token-authenticated, so the admin's CSRF check (which
guards cookie sessions) is lifted for this blueprint only.
"""

from __future__ import annotations

from flask import Flask, request
from werkzeug.routing import PathConverter

from ccadmin.extensions import csrf
from ccadmin.manage import auth, batch, campaigns, entries, imports, openapi  # noqa: F401
from ccadmin.manage.routes import bp, close_methods

close_methods()

# Endpoints anyone may read: the contract and its rendered page.
PUBLIC_ENDPOINTS = frozenset({"manage.openapi_document", "manage.reference", "manage.not_found"})


def _is_public(endpoint: str | None) -> bool:
    return endpoint in PUBLIC_ENDPOINTS or (endpoint or "").startswith("manage.method_not_allowed")


@bp.before_request
def _authenticate() -> None:
    if not _is_public(request.endpoint):
        auth.authenticate()


class AnyTextConverter(PathConverter):
    """Like `path`, but also matching newlines and other control characters.

    A user id with one is refused by the same rule as everywhere (422, in
    JSON); with werkzeug's `path` it would not match a route at all and get
    the admin's HTML 404.
    """

    regex = r"[\s\S]*?"


def init_app(app: Flask) -> None:
    """Register the blueprint, exempt from CSRF (no cookies are read here)."""
    app.url_map.converters["anytext"] = AnyTextConverter
    app.register_blueprint(bp)
    csrf.exempt(bp)
