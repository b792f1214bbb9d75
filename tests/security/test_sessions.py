"""Admin sessions: cookie flags, a new id at login, server-side logout, idle and max timeouts."""

from __future__ import annotations

import time

import pytest
from common.security_support import fresh_browser, take_redis_down, with_settings
from common.support import PASSWORD, csrf_token, login

from ccadmin import keys
from ccadmin.app import create_app
from ccadmin.extensions import db
from ccadmin.security import sessions


def session_cookie(client) -> str | None:
    cookie = client.get_cookie("session")
    return cookie.value if cookie else None


def stored_session(client) -> dict:
    with client.session_transaction() as session:
        return dict(session)


def test_cookie_is_httponly_lax_and_not_secure_over_http(client, make_user):
    make_user("ana@example.com")
    response = login(client, "ana@example.com")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie
    assert "Strict-Transport-Security" not in response.headers


def test_cookie_is_secure_over_https(app, make_user):
    make_user("ana@example.com")
    client = fresh_browser(app)
    token = csrf_token(client, "https://localhost/login")
    response = client.post(
        "https://localhost/login",
        data={"email": "ana@example.com", "password": PASSWORD, "csrf_token": token},
        # Over HTTPS the CSRF check also wants a same-site Referer, as browsers send.
        headers={"Referer": "https://localhost/login"},
    )
    assert response.status_code == 302
    assert "Secure" in response.headers["Set-Cookie"]
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


@pytest.mark.parametrize("trusted", ["0", "1"])
def test_forwarded_proto_is_believed_only_from_configured_proxies(_schema, monkeypatch, trusted):
    monkeypatch.setenv("CCADMIN_TRUSTED_PROXIES", trusted)
    app = create_app({"TESTING": True})
    with app.app_context():
        response = app.test_client().get(
            "/login", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
        )
        secure = "Secure" in response.headers["Set-Cookie"]
        assert secure is (trusted == "1")
        assert ("Strict-Transport-Security" in response.headers) is (trusted == "1")
        db.session.remove()
        db.engine.dispose()


def test_login_replaces_the_session(client, make_user):
    make_user("ana@example.com")
    client.get("/login")
    # Whatever the browser held before (a planted session id included) is dropped.
    with client.session_transaction() as session:
        session[sessions.SESSION_ID] = "planted-by-someone-else"
        session["leftover"] = "x"
    before_cookie = session_cookie(client)
    login(client, "ana@example.com")
    after = stored_session(client)
    assert session_cookie(client) != before_cookie
    assert after[sessions.SESSION_ID] != "planted-by-someone-else"
    assert "leftover" not in after and "csrf_token" not in after
    # A second login gets yet another id.
    first_id = after[sessions.SESSION_ID]
    client.post("/logout", data={"csrf_token": csrf_token(client, "/logout")})
    login(client, "ana@example.com")
    assert stored_session(client)[sessions.SESSION_ID] != first_id


def test_logout_invalidates_a_copied_cookie(app, client, make_user, redis_client):
    make_user("ana@example.com")
    login(client, "ana@example.com")
    copied = session_cookie(client)
    session_id = stored_session(client)[sessions.SESSION_ID]
    assert redis_client.exists(keys.admin_session_key(session_id))
    token = csrf_token(client, "/logout")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert not redis_client.exists(keys.admin_session_key(session_id))

    thief = fresh_browser(app)
    thief.set_cookie("session", copied)
    response = thief.get("/admin/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_idle_timeout(app, client, make_user, redis_client):
    make_user("ana@example.com")
    with_settings(app, session_idle_minutes=5)
    login(client, "ana@example.com")
    session_id = stored_session(client)[sessions.SESSION_ID]
    # The server-side record lives exactly as long as the idle timeout.
    assert 0 < redis_client.ttl(keys.admin_session_key(session_id)) <= 300
    with client.session_transaction() as session:
        session[sessions.SEEN_AT] = int(time.time()) - 301
    response = client.get("/admin/")
    assert response.status_code == 302
    assert not redis_client.exists(keys.admin_session_key(session_id))


def test_server_side_expiry_logs_out(client, make_user, redis_client):
    make_user("ana@example.com")
    login(client, "ana@example.com")
    session_id = stored_session(client)[sessions.SESSION_ID]
    redis_client.delete(keys.admin_session_key(session_id))  # what the TTL does when idle
    assert client.get("/admin/").status_code == 302


def test_absolute_timeout_despite_activity(app, client, make_user, redis_client):
    make_user("ana@example.com")
    with_settings(app, session_max_hours=2)
    login(client, "ana@example.com")
    session_id = stored_session(client)[sessions.SESSION_ID]
    with client.session_transaction() as session:
        session[sessions.LOGIN_AT] = int(time.time()) - 2 * 3600 - 1
    assert client.get("/admin/").status_code == 302
    assert not redis_client.exists(keys.admin_session_key(session_id))


def test_activity_refreshes_but_dashboard_polling_does_not(app, client, make_user):
    make_user("ana@example.com")
    login(client, "ana@example.com")
    stale = int(time.time()) - 60
    with client.session_transaction() as session:
        session[sessions.SEEN_AT] = stale
    client.get("/admin/metrics/data?range=5m")
    assert stored_session(client)[sessions.SEEN_AT] == stale
    client.get("/admin/")
    assert stored_session(client)[sessions.SEEN_AT] > stale


def test_password_change_ends_the_users_other_sessions(app, make_user):
    make_user("boss@example.com", role="admin")
    target = make_user("ana@example.com", role="editor")
    ana = fresh_browser(app)
    login(ana, "ana@example.com")
    assert ana.get("/admin/").status_code == 200
    boss = fresh_browser(app)
    login(boss, "boss@example.com")
    token = csrf_token(boss, f"/admin/users/edit/?id={target.id}")
    response = boss.post(
        f"/admin/users/edit/?id={target.id}",
        data={
            "email": "ana@example.com",
            "role": "editor",
            "active": "y",
            "password": "a brand new password",
            "csrf_token": token,
        },
    )
    assert response.status_code == 302
    assert ana.get("/admin/").status_code == 302
    assert boss.get("/admin/").status_code == 200


def test_sessions_survive_a_redis_outage(app, client, make_user):
    make_user("ana@example.com")
    login(client, "ana@example.com")
    take_redis_down(app)
    assert client.get("/admin/").status_code == 200
    # The signed timestamps still enforce the timeouts without Redis.
    with client.session_transaction() as session:
        session[sessions.SEEN_AT] = int(time.time()) - 31 * 60
    assert client.get("/admin/").status_code == 302


def test_a_session_without_a_server_side_id_is_refused(client, make_user):
    user = make_user("ana@example.com")
    client.get("/login")
    # A cookie forged with the key but not made by a login (no id, no record).
    with client.session_transaction() as session:
        session["_user_id"] = str(user.id)
        session["_fresh"] = True
    assert client.get("/admin/").status_code == 302
