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
from ccadmin.manage import (  # noqa: F401  (each module registers its routes)
    approval,
    batch,
    campaigns,
    entries,
    events,
    imports,
    openapi,
    token_auth,
)
from ccadmin.manage.errors import ApiError, handle_any
from ccadmin.manage.routes import bp, close_methods
from ccadmin.security.errors import render_under

close_methods()

NOT_UTF8 = "Not valid UTF-8 text."
# Endpoints anyone may read: the contract and its rendered page.
PUBLIC_ENDPOINTS = frozenset({"manage.openapi_document", "manage.reference", "manage.not_found"})


def _is_public(endpoint: str | None) -> bool:
    return endpoint in PUBLIC_ENDPOINTS or (endpoint or "").startswith(
        ("manage.method_not_allowed", "manage.options_")
    )


@bp.before_request
def _authenticate() -> None:
    if not _is_public(request.endpoint):
        token_auth.authenticate()
        _check_path_is_text()


def _check_path_is_text() -> None:
    """Refuse an address whose bytes are not UTF-8 (422 naming the part), as a body is.

    werkzeug decodes the path with replacement characters, so a user id sent
    as invalid UTF-8 would otherwise be stored as a different id.
    """
    try:
        request.environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8")
    except UnicodeError:
        parts = {
            name: NOT_UTF8
            for name, value in (request.view_args or {}).items()
            if isinstance(value, str) and "\ufffd" in value
        }
        raise ApiError(
            422, "validation_failed", "The address is not UTF-8 text.", parts or None
        ) from None


class AnyTextConverter(PathConverter):
    """Like `path`, but also matching newlines and other control characters.

    A user id with one is refused by the same rule as everywhere (422, in
    JSON); with werkzeug's `path` it would not match a route at all and get
    the admin's HTML 404.
    """

    regex = r"[\s\S]*?"
    # Declared, since werkzeug would infer True from a regex without "/".
    part_isolating = False


def init_app(app: Flask) -> None:
    """Register the blueprint, exempt from CSRF (no cookies are read here)."""
    app.url_map.converters["anytext"] = AnyTextConverter
    app.register_blueprint(bp)
    csrf.exempt(bp)
    render_under(app, f"{bp.url_prefix}/", handle_any)
