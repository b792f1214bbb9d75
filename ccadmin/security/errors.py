"""Error pages: a short message and the status, never a traceback, SQL or a stored value."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.wrappers import Response

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


def init_app(app: Flask) -> None:
    """Register the handlers for every status in MESSAGES."""
    for status in MESSAGES:
        if status != 500:
            app.register_error_handler(status, render_error)
    app.register_error_handler(InternalServerError, render_unexpected)
