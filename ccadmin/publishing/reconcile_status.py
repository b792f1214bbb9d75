"""The last reconcile's report and the full rebuild's progress (both written by the
worker), for the admin home page."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import redis
from flask import Flask, current_app

from ccadmin import keys
from ccadmin.publishing import rebuild_plan
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


def rebuild_progress(now: float | None = None) -> dict[str, Any] | None:
    """The current or last full rebuild (keys.REBUILD_PLAN) with its rate and ETA;
    None if none has run since Redis was emptied, or Redis is unreachable.

    The ETA assumes the chunks left take as long as the chunks done: ids are
    split evenly, so a chunk is about as much work as any other.
    """
    try:
        connection = get_store(current_app.config["CCADMIN_SETTINGS"])
        plan = rebuild_plan.read_plan(connection)
        locked = bool(connection.exists(keys.REBUILD_LOCK))
    except (redis.RedisError, OSError) as error:
        log.warning("rebuild progress unavailable: %s", error)
        return None
    except (KeyError, ValueError):
        return None  # a plan half written by a rebuild of an older release
    if plan is None:
        return None
    return _progress(plan, locked, time.time() if now is None else now)


def _progress(plan: rebuild_plan.Plan, locked: bool, now: float) -> dict[str, Any]:
    chunks, done, entries = plan.chunks, plan.chunks_done, plan.entries
    finished_at = plan.finished_at
    elapsed = max((finished_at or now) - plan.started_at, 0.001)
    eta = None
    if finished_at is None and done:
        eta = elapsed * (chunks - done) / done
    return {
        "rebuild_id": plan.rebuild_id,
        "chunks": chunks,
        "chunks_done": done,
        "percent": 100.0 if not chunks else round(100.0 * done / chunks, 1),
        "entries": entries,
        "written": plan.written,
        "stale": plan.stale,
        "started_at": _iso(plan.started_at),
        "finished_at": None if finished_at is None else _iso(finished_at),
        "seconds": round(elapsed, 1),
        "rate": round(entries / elapsed),
        "eta_seconds": None if eta is None else round(eta),
        "finished": finished_at is not None,
        # Unfinished and unlocked: nothing progressed for the lock's TTL; the
        # sweeper resumes it from its plan.
        "stalled": finished_at is None and not locked,
    }


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def init_app(app: Flask) -> None:
    """Templates call these only where they show them."""
    app.jinja_env.globals["last_reconcile_report"] = last_reconcile_report
    app.jinja_env.globals["rebuild_progress"] = rebuild_progress
