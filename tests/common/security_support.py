"""Helpers shared by the security tests: audit rows, database snapshots, a Redis that is down."""

from __future__ import annotations

import dataclasses

from sqlalchemy import select

from ccadmin.extensions import db
from ccadmin.models import AuditEvent

# Nothing listens on port 1: connections are refused at once.
DOWN_REDIS_URL = "redis://127.0.0.1:1/0"


def audit_events(action: str | None = None) -> list[AuditEvent]:
    """Audit rows in insertion order, optionally of one action."""
    db.session.expire_all()
    query = select(AuditEvent).order_by(AuditEvent.id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    return list(db.session.scalars(query))


def database_state(audit: bool = True) -> dict[str, list]:
    """Every row of every table (without the audit log when `audit` is False)."""
    db.session.expire_all()
    return {
        table.name: sorted(tuple(map(repr, row)) for row in db.session.execute(select(table)))
        for table in db.metadata.sorted_tables
        if audit or table.name != AuditEvent.__tablename__
    }


def redis_state(client) -> dict[bytes, bytes]:
    """Every key of the test's Redis with its serialized value."""
    return {key: client.dump(key) for key in client.scan_iter()}


def take_redis_down(app) -> None:
    """Point this app at a Redis that refuses connections."""
    settings = app.config["CCADMIN_SETTINGS"]
    app.config["CCADMIN_SETTINGS"] = dataclasses.replace(settings, redis_url=DOWN_REDIS_URL)


def with_settings(app, **changes) -> None:
    """Replace some settings of a running app (timeouts, limits)."""
    app.config["CCADMIN_SETTINGS"] = dataclasses.replace(app.config["CCADMIN_SETTINGS"], **changes)


def fresh_browser(app, address: str | None = None):
    """A second test client, as another browser (optionally from another address).

    The test's app context outlives requests, so Flask-WTF's per-request CSRF
    token cache in `g` is dropped here, as a real new request would start.
    """
    from flask import g

    g.pop("csrf_token", None)
    client = app.test_client()
    if address:
        client.environ_base["REMOTE_ADDR"] = address
    return client
