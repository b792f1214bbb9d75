"""Admin hardening: proxy trust, session cookies and timeouts, login limits, headers, errors.

docs/security.md describes the threat model these pieces answer.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from ccadmin.config import Settings
from ccadmin.security import errors, headers, sessions
from ccadmin.security.identifiers import RecordIdConverter


def init_app(app: Flask) -> None:
    """Install every admin protection on `app`."""
    settings: Settings = app.config["CCADMIN_SETTINGS"]
    # Before any route is added: `<int:...>` never matches an id too big to store.
    app.url_map.converters["int"] = RecordIdConverter
    if settings.trusted_proxies:
        # Behind N proxies, the Nth value from the right of X-Forwarded-For is
        # the client and X-Forwarded-Proto says whether it used HTTPS. Without
        # proxies these headers come from the client and are ignored.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies
        )
    app.session_interface = sessions.SessionInterface()
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_max_hours),
        # Each request that refreshes the idle timer rewrites the cookie anyway.
        SESSION_REFRESH_EACH_REQUEST=False,
    )
    headers.init_app(app)
    errors.init_app(app)
