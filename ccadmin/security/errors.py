"""Error pages: a short message and the status, never a traceback, SQL or a stored value.

A database that cannot be reached gets a page of its own (503): nothing can
be shown or saved while it is down, and the page asks the marketer to retry.
The pool re-checks connections before use (`pool_pre_ping`), so the admin
recovers by itself when the database returns, without a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, current_app, g, jsonify, render_template, request
from sqlalchemy.exc import DisconnectionError, OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.wrappers import Response

from ccadmin.extensions import db, login_manager

log = logging.getLogger(__name__)

MESSAGES = {
    400: "The request could not be understood. Go back, reload the page and try again.",
    401: "Log in to continue.",
    403: "Your role does not allow this.",
    404: "There is no page at this address.",
    405: "This address does not accept that kind of request.",
    413: "The request is larger than this server accepts.",
    429: "Too many attempts. Wait a few minutes and try again.",
    500: "Something went wrong on our side; it has been logged. Please try again.",
}
TITLES = {
    400: "Bad request",
    401: "Log in required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    413: "Too large",
    429: "Too many requests",
    500: "Server error",
}

RETRY_AFTER_SECONDS = "30"
DATABASE_TITLE = "Database unavailable"
DATABASE_MESSAGE = (
    "The database cannot be reached right now, so nothing can be shown or saved. "
    "Nothing you saved earlier is lost. Try again in a minute."
)

ErrorAnswer = tuple[Response | str, int, list[tuple[str, str]]]
PrefixRenderer = Callable[[Exception], Response]
_PREFIXES = "ccadmin.error_prefixes"


def render_under(app: Flask, prefix: str, renderer: PrefixRenderer) -> None:
    """Let `renderer` answer the app-level errors of every path under `prefix`.

    Errors raised while routing (no route, an id a converter refused) reach
    only the app's handlers, never a blueprint's, so an API with its own error
    format registers it here.
    """
    app.extensions.setdefault(_PREFIXES, {})[prefix] = renderer


def renderer_for_path() -> PrefixRenderer | None:
    """The renderer registered for this request's path, if any."""
    for prefix, renderer in current_app.extensions.get(_PREFIXES, {}).items():
        if request.path.startswith(prefix):
            return renderer
    return None


def _wants_json() -> bool:
    accept = request.accept_mimetypes
    return accept.best == "application/json" or (accept.accept_json and not accept.accept_html)


def render_error(error: HTTPException) -> ErrorAnswer:
    """The status's fixed message, as JSON or a plain page; nothing from the error itself."""
    renderer = renderer_for_path()
    if renderer is not None:
        response = renderer(error)
        return response, response.status_code, []
    status = error.code if error.code in MESSAGES else 500
    title, message = TITLES[status], MESSAGES[status]
    if _wants_json():
        body: Response | str = jsonify(
            {"error": title.lower().replace(" ", "_"), "message": message}
        )
    else:
        body = render_template("errors/error.html", status=status, title=title, message=message)
    # Keep `Allow` (405) and `Retry-After`; the content type is ours.
    headers = [
        (name, value)
        for name, value in error.get_headers()
        if name.lower() != "content-type" and status == error.code
    ]
    return body, status, headers


def render_unexpected(error: InternalServerError) -> ErrorAnswer:
    """An exception no view handled: logged in full, shown as a plain 500."""
    renderer = renderer_for_path()
    if renderer is not None:
        return renderer(getattr(error, "original_exception", None) or error), 500, []
    original = getattr(error, "original_exception", None)
    if original is not None:
        log.error("unhandled error on %s %s", request.method, request.path, exc_info=original)
    return render_error(InternalServerError())


def database_unavailable(error: Exception) -> ErrorAnswer:
    """503 with a fixed message; the driver's error (and its SQL) goes to the log only."""
    renderer = renderer_for_path()
    if renderer is not None:
        return renderer(error), 503, []
    log.error("database unreachable: %s", type(error).__name__, exc_info=error)
    db.session.rollback()
    if "_login_user" not in g:
        # The user record cannot be read either: render as to a visitor
        # rather than fail again inside the template's context processor.
        g._login_user = login_manager.anonymous_user()
    page = render_template(
        "errors/error.html", status=503, title=DATABASE_TITLE, message=DATABASE_MESSAGE
    )
    return page, 503, [("Retry-After", RETRY_AFTER_SECONDS)]


def init_app(app: Flask) -> None:
    """Register the handlers for every status in MESSAGES, and for a database gone away."""
    for status in MESSAGES:
        if status != 500:
            app.register_error_handler(status, render_error)
    app.register_error_handler(InternalServerError, render_unexpected)
    app.register_error_handler(OperationalError, database_unavailable)
    app.register_error_handler(DisconnectionError, database_unavailable)
