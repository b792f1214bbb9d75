"""The admin's answer when the database is unreachable: a clear 503 page, never a traceback.

The database is the source of truth, so nothing can be shown or saved while
it is down; the page says so and asks the marketer to retry. The pool
re-checks connections before use (`pool_pre_ping`), so the admin recovers by
itself when the database returns, without a restart.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g, render_template
from sqlalchemy.exc import DisconnectionError, OperationalError

from ccadmin.extensions import db, login_manager
from ccadmin.security.errors import renderer_for_path

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "30"
TITLE = "Database unavailable"
MESSAGE = (
    "The database cannot be reached right now, so nothing can be shown or saved. "
    "Nothing you saved earlier is lost. Try again in a minute."
)


def database_unavailable(error: Exception) -> tuple[Response | str, int, list[tuple[str, str]]]:
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
    page = render_template("errors/error.html", status=503, title=TITLE, message=MESSAGE)
    return page, 503, [("Retry-After", RETRY_AFTER_SECONDS)]


def init_app(app: Flask) -> None:
    """Answer connection-level database errors with the 503 page."""
    app.register_error_handler(OperationalError, database_unavailable)
    app.register_error_handler(DisconnectionError, database_unavailable)
