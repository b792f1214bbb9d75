"""The last reconcile's report (written by the worker), for the admin home page."""

from __future__ import annotations

import json
import logging
from typing import Any

import redis
from flask import Flask, current_app

from ccadmin import keys
from ccadmin.redis_client import get_store

log = logging.getLogger(__name__)


def last_reconcile_report() -> dict[str, Any] | None:
    """The report under keys.RECONCILE_REPORT; None if none yet or Redis is unreachable."""
    try:
        raw = get_store(current_app.config["CCADMIN_SETTINGS"]).get(keys.RECONCILE_REPORT)
    except (redis.RedisError, OSError) as error:
        log.warning("reconcile report unavailable: %s", error)
        return None
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def init_app(app: Flask) -> None:
    """Templates call `last_reconcile_report()` only where they show it."""
    app.jinja_env.globals["last_reconcile_report"] = last_reconcile_report
