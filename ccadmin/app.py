"""The admin web app factory: configuration, extensions, admin views, CLI."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask
from sqlalchemy import event

from ccadmin import config
from ccadmin.extensions import csrf, db, login_manager, migrate

log = logging.getLogger(__name__)


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """Build the admin app; `overrides` replaces Flask config keys (tests)."""
    settings = config.load()
    app = Flask(
        __name__,
        instance_path=str(settings.instance_path),
        template_folder=str(config.PROJECT_ROOT / "templates"),
        static_folder=str(config.PROJECT_ROOT / "static"),
    )
    register_config(app, settings)
    if overrides:
        app.config.update(overrides)
    register_extensions(app)
    register_security(app)
    register_blueprints(app)
    register_cli(app)
    return app


def register_config(app: Flask, settings: config.Settings) -> None:
    """Flask settings derived from the environment, plus the settings object itself."""
    config.private_directory(settings.instance_path)
    engine_options: dict[str, Any] = {"pool_pre_ping": True}
    if settings.database_url.startswith("sqlite"):
        # Several processes share the SQLite file; wait for a lock, don't fail.
        engine_options["connect_args"] = {"timeout": 30}
    app.config.update(
        CCADMIN_SETTINGS=settings,
        SECRET_KEY=settings.require_secret_key(),
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        WTF_CSRF_TIME_LIMIT=None,
        MAX_CONTENT_LENGTH=16 * 1024 * 1024,
    )


def register_extensions(app: Flask) -> None:
    """Bind the shared extension objects to this app."""
    from ccadmin import (
        models,  # noqa: F401  (registers the tables on db.metadata)
        publishing,
    )
    from ccadmin.publishing import reconcile_status

    db.init_app(app)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        with app.app_context():
            event.listen(db.engine, "connect", _sqlite_pragmas)
    migrate.init_app(app, db, directory=str(config.PROJECT_ROOT / "migrations"))
    csrf.init_app(app)
    login_manager.init_app(app)
    publishing.init_app(app)
    reconcile_status.init_app(app)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the worker read while the admin writes; the embedded default
    # runs web, worker and CLI against one file.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def register_security(app: Flask) -> None:
    """Proxy trust, session rules, security headers and error pages (docs/security.md)."""
    from ccadmin import security

    security.init_app(app)


def register_blueprints(app: Flask) -> None:
    """Login pages, the admin (views are built per app: see admin/__init__.py), the ingest
    API, and Prometheus's `/metrics`."""
    from ccadmin import admin, manage
    from ccadmin.metrics import exposition
    from ccadmin.security import login

    login.init_app(app)
    admin.init_app(app)
    manage.init_app(app)
    exposition.init_app(app)


def register_cli(app: Flask) -> None:
    """`flask --app wsgi seed|create-user|publish|reconcile`."""
    from ccadmin import cli

    cli.init_app(app)
