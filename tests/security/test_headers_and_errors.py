"""Security headers on every admin response; error pages without tracebacks, SQL or values."""

from __future__ import annotations

import io
import re

import pytest
from common.security_support import fresh_browser
from common.support import csrf_token, login
from sqlalchemy import text

from ccadmin.app import create_app
from ccadmin.extensions import db

EXPECTED = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def assert_security_headers(response) -> None:
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, name
    policy = dict(
        (directive.split(" ", 1) + [""])[:2]
        for directive in response.headers["Content-Security-Policy"].split("; ")
    )
    assert policy["frame-ancestors"] == "'none'"
    assert policy["object-src"] == "'none'"
    assert policy["base-uri"] == "'none'"
    assert "unsafe-inline" not in policy["script-src"]
    assert "unsafe-eval" not in policy["script-src"]
    assert "*" not in policy["script-src"] and "http" not in policy["script-src"]


@pytest.fixture
def admin(app, make_user):
    make_user("boss@example.com", role="admin")
    client = fresh_browser(app)
    login(client, "boss@example.com")
    return client


@pytest.mark.parametrize(
    "url",
    [
        "/login",
        "/admin/",
        "/admin/content/",
        "/admin/campaigns/new/",
        "/admin/audit/",
        "/admin/metrics/",
        "/admin/metrics/data?range=5m",
        "/admin/users/",
        "/static/admin/page-actions.js",
        "/admin/static/vendor/jquery.min.js",
        "/no/such/page",
    ],
)
def test_every_response_carries_the_headers(admin, url):
    response = admin.get(url)
    assert response.status_code in (200, 302, 404)
    assert_security_headers(response)


def test_inline_scripts_carry_this_requests_nonce(admin):
    page = admin.get("/admin/content/").get_data(as_text=True)
    first = admin.get("/admin/content/")
    policy = first.headers["Content-Security-Policy"]
    nonces = re.findall(r"'nonce-([A-Za-z0-9_-]+)'", policy)
    assert len(nonces) == 1
    nonce = nonces[0]
    body = first.get_data(as_text=True)
    assert f'nonce="{nonce}"' in body
    # A new nonce per response.
    assert f'nonce="{nonce}"' not in page
    # No inline event handlers are left for the policy to block.
    for handler in ("onclick=", "onchange=", "onsubmit=", "onload="):
        assert handler not in body


def test_hsts_only_over_https(admin):
    assert "Strict-Transport-Security" not in admin.get("/admin/").headers
    assert "max-age=" in admin.get("https://localhost/login").headers["Strict-Transport-Security"]


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("GET", "/admin/no-such-view/", 404),
        ("PUT", "/login", 405),
        ("POST", "/login", 400),  # no CSRF token
        ("POST", "/admin/content/delete/", 401),
        ("GET", "/admin/users/", 403),
    ],
)
def test_error_pages_are_plain(app, make_user, method, url, status):
    make_user("viewer@example.com", role="viewer")
    client = fresh_browser(app)
    if status == 403:
        login(client, "viewer@example.com")
    data = {"csrf_token": csrf_token(client, "/login")} if status == 401 else None
    response = client.open(url, method=method, data=data)
    assert response.status_code == status
    body = response.get_data(as_text=True)
    assert f'data-status="{status}"' in body
    assert "Traceback" not in body and "werkzeug" not in body.lower()
    assert_security_headers(response)
    if status == 405:
        assert "GET" in response.headers["Allow"]


def test_json_clients_get_json_errors(app):
    response = fresh_browser(app).get("/nothing", headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert response.get_json() == {
        "error": "not_found",
        "message": "There is no page at this address.",
    }


def test_oversized_request_is_413(admin):
    token = csrf_token(admin, "/admin/content/")
    response = admin.post(
        "/admin/content/new/",
        data={"csrf_token": token, "field_message": "x" * (17 * 1024 * 1024)},
    )
    assert response.status_code == 413
    assert 'data-status="413"' in response.get_data(as_text=True)


def test_server_errors_show_no_sql_or_traceback(_schema):
    app = create_app({"TESTING": False, "PROPAGATE_EXCEPTIONS": False})

    @app.route("/boom/database")
    def database_error():
        db.session.execute(text("SELECT secret_column FROM no_such_table"))

    @app.route("/boom/code")
    def code_error():
        raise RuntimeError("failed running SELECT secret_column FROM no_such_table")

    with app.app_context():
        for url in ("/boom/database", "/boom/code"):
            response = app.test_client().get(url)
            body = response.get_data(as_text=True)
            # A database that fails answers 503 (unreachable) or 500, never details.
            assert response.status_code in (500, 503), url
            assert f'data-status="{response.status_code}"' in body
            for leak in ("no_such_table", "secret_column", "SELECT", "Traceback", "sqlalchemy"):
                assert leak not in body, (url, leak)
            assert_security_headers(response)
        db.session.remove()
        db.engine.dispose()


HUGE = "99999999999999999999"


@pytest.mark.parametrize(
    ("url", "status"),
    [
        (f"/admin/content/?page={HUGE}", 400),
        (f"/admin/audit/?page={HUGE}", 400),
        (f"/admin/campaigns/?page={HUGE}", 400),
        (f"/admin/imports/{HUGE}/", 404),
        (f"/admin/campaign-tools/{HUGE}/", 404),
        # Flask-Admin's answer for a record that does not exist: back to the list.
        (f"/admin/content/details/?id={HUGE}", 302),
        # Unknown campaigns: the form's first campaign, all imports.
        (f"/admin/content/new/?campaign_id={HUGE}", 200),
        (f"/admin/imports/?campaign_id={HUGE}", 200),
    ],
)
def test_numbers_too_big_for_the_database_are_not_server_errors(client, make_user, url, status):
    make_user("admin@example.com", role="admin")
    login(client, "admin@example.com")
    assert client.get(url).status_code == status


def test_an_upload_for_a_campaign_id_too_big_is_refused_cleanly(client, make_user):
    make_user("admin@example.com", role="admin")
    login(client, "admin@example.com")
    response = client.post(
        "/admin/imports/upload",
        data={
            "campaign_id": HUGE,
            "csrf_token": csrf_token(client, "/admin/imports/"),
            "file": (io.BytesIO(b"user_id,message\n1,a\n"), "a.csv"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 302
    assert "Choose a campaign." in client.get("/admin/imports/").get_data(as_text=True)


@pytest.mark.parametrize(
    ("url", "action"),
    [
        ("/admin/campaigns/action/", "delete"),
        ("/admin/users/action/", "unlock"),
        ("/admin/api_keys/action/", "revoke"),
        ("/admin/management-tokens/action/", "revoke"),
    ],
)
def test_bulk_actions_on_ids_too_big_touch_nothing(client, make_user, url, action):
    make_user("admin@example.com", role="admin")
    login(client, "admin@example.com")
    listing = url.replace("action/", "")
    response = client.post(
        url,
        data={"action": action, "rowid": HUGE, "csrf_token": csrf_token(client, listing)},
    )
    assert response.status_code == 302
