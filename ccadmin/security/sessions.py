"""Admin sessions: a new id at every login, a server-side record, idle and absolute timeouts.

Flask keeps the session in a signed cookie, which the server alone cannot
revoke. So each login also writes a record to Redis under a fresh random id,
with the idle timeout as its TTL: a request is logged in only while its
cookie is signed, within both timeouts, and its record exists. Logout deletes
the record, so a copy of the cookie taken earlier is worthless afterwards.

Redis down: the record cannot be read or written. Marketers must keep
working through a Redis restart (saves already fall back to "publish
pending"), so the check fails open: the cookie's own signed timestamps still
enforce both timeouts, and the event is logged. A session logged out while
Redis was down stays usable until its idle timeout; docs/security.md says so.
"""

from __future__ import annotations

import logging
import secrets
import time

import redis
from flask import current_app, g, request, session
from flask.sessions import SecureCookieSessionInterface

from ccadmin import keys
from ccadmin.config import Settings
from ccadmin.redis_client import get_redis

log = logging.getLogger(__name__)

SESSION_ID = "_sid"
LOGIN_AT = "_login_at"
SEEN_AT = "_seen_at"
# Requests a page makes on its own (the dashboard's refresh every 1.5 s) do
# not count as activity: an open tab must not keep a session alive forever.
PASSIVE_ENDPOINTS = frozenset({"metrics.data", "imports.status_view"})


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie, marked `Secure` whenever the request came over HTTPS."""

    def get_cookie_secure(self, app) -> bool:
        # request.is_secure reads X-Forwarded-Proto only behind ProxyFix,
        # which is installed only when CCADMIN_TRUSTED_PROXIES says so.
        return bool(app.config["SESSION_COOKIE_SECURE"] or request.is_secure)


def _settings() -> Settings:
    return current_app.config["CCADMIN_SETTINGS"]


def _redis() -> redis.Redis:
    return get_redis(_settings())


def idle_seconds() -> int:
    """How long a session survives without a request."""
    return _settings().session_idle_minutes * 60


def max_seconds() -> int:
    """How long a session survives after its login, whatever the activity."""
    return _settings().session_max_hours * 3600


def start(user_id: int) -> None:
    """Replace whatever session the browser had with a new one for this user."""
    # A session id chosen before login (session fixation) must not survive it.
    _reset()
    session_id = secrets.token_urlsafe(32)
    now = int(time.time())
    session[SESSION_ID] = session_id
    session[LOGIN_AT] = now
    session[SEEN_AT] = now
    session.permanent = True
    try:
        pipe = _redis().pipeline()
        pipe.set(keys.admin_session_key(session_id), str(user_id), ex=idle_seconds())
        pipe.sadd(keys.admin_user_sessions_key(user_id), session_id)
        pipe.expire(keys.admin_user_sessions_key(user_id), max_seconds())
        pipe.execute()
    except redis.RedisError as error:
        log.warning("session of user %s not recorded, Redis unavailable: %s", user_id, error)


def is_valid(user_id: str) -> bool:
    """True when this request's session belongs to `user_id` and has not ended.

    An ended session is cleared, so the browser drops the cookie.
    """
    session_id = session.get(SESSION_ID)
    login_at = session.get(LOGIN_AT)
    seen_at = session.get(SEEN_AT)
    if not (isinstance(session_id, str) and isinstance(login_at, int)):
        return _clear()
    if not isinstance(seen_at, int):
        return _clear()
    now = int(time.time())
    if now - login_at > max_seconds() or now - seen_at > idle_seconds():
        end()
        return False
    active = request.endpoint not in PASSIVE_ENDPOINTS
    key = keys.admin_session_key(session_id)
    try:
        connection = _redis()
        stored = connection.getex(key, ex=idle_seconds()) if active else connection.get(key)
    except redis.RedisError as error:
        log.warning("session not checked server-side, Redis unavailable: %s", error)
        stored = str(user_id).encode()
    if stored is None or stored.decode() != str(user_id):
        return _clear()
    if active and now != seen_at:
        session[SEEN_AT] = now
    return True


def end() -> None:
    """Delete this request's session server-side and in the browser (logout, timeout)."""
    session_id = session.get(SESSION_ID)
    user_id = session.get("_user_id")
    if isinstance(session_id, str):
        try:
            pipe = _redis().pipeline()
            pipe.delete(keys.admin_session_key(session_id))
            if user_id is not None:
                pipe.srem(keys.admin_user_sessions_key(int(user_id)), session_id)
            pipe.execute()
        except (redis.RedisError, ValueError) as error:
            log.warning("session not deleted server-side: %s", error)
    _reset()


def end_all(user_id: int, keep_current: bool = False) -> None:
    """End every session of a user (password changed, deactivated, deleted)."""
    current = session.get(SESSION_ID) if keep_current else None
    set_key = keys.admin_user_sessions_key(user_id)
    try:
        connection = _redis()
        session_ids = [value.decode() for value in connection.smembers(set_key)]
        doomed = [session_id for session_id in session_ids if session_id != current]
        if doomed:
            pipe = connection.pipeline()
            pipe.delete(*(keys.admin_session_key(session_id) for session_id in doomed))
            pipe.srem(set_key, *doomed)
            pipe.execute()
    except redis.RedisError as error:
        log.warning("sessions of user %s not ended, Redis unavailable: %s", user_id, error)


def _reset() -> None:
    session.clear()
    # Flask-WTF caches the signed CSRF token in `g`; it belonged to the old session.
    g.pop("csrf_token", None)


def _clear() -> bool:
    _reset()
    return False
