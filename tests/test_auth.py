"""Logging in and out: sessions, generic failures, CSRF, and redirects that stay on site."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from common.support import PASSWORD, csrf_token, login

from ccadmin.extensions import db
from ccadmin.models import AdminUser
from ccadmin.security.login import LOGIN_FAILED


def test_root_redirects_to_admin(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/admin/")


def test_admin_pages_send_anonymous_browsers_to_login(client):
    response = client.get("/admin/content/?search=42")
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"
    assert parse_qs(location.query) == {"next": ["/admin/content/?search=42"]}


def test_anonymous_post_is_refused(client, make_user):
    make_user("someone@example.com")
    token = csrf_token(client, "/login")
    response = client.post("/admin/content/delete/", data={"id": "1", "csrf_token": token})
    assert response.status_code == 401


def test_login_then_logout(client, make_user):
    make_user("ana@example.com", role="editor")
    response = login(client, "ana@example.com")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/admin/")

    home = client.get("/admin/")
    assert home.status_code == 200
    assert "ana@example.com (editor)" in home.get_data(as_text=True)
    assert db.session.scalars(db.select(AdminUser)).one().last_login_at is not None

    token = csrf_token(client, "/logout")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/admin/").status_code == 302


def test_logout_needs_csrf_token(client, make_user):
    make_user("ana@example.com")
    login(client, "ana@example.com")
    assert client.post("/logout").status_code == 400
    assert client.get("/admin/").status_code == 200


def test_login_post_without_csrf_token_is_refused(client, make_user):
    make_user("ana@example.com")
    response = client.post("/login", data={"email": "ana@example.com", "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/admin/").status_code == 302


@pytest.mark.parametrize(
    ("email", "password"),
    [("ana@example.com", "wrong password here"), ("nobody@example.com", PASSWORD)],
)
def test_failed_login_is_generic(client, make_user, email, password):
    make_user("ana@example.com")
    response = login(client, email, password)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert LOGIN_FAILED in page
    assert client.get("/admin/").status_code == 302


def test_inactive_user_cannot_log_in(client, make_user):
    user = make_user("ana@example.com")
    user.active = False
    db.session.commit()
    response = login(client, "ana@example.com")
    assert LOGIN_FAILED in response.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302


def test_email_is_matched_ignoring_case(client, make_user):
    make_user("ana@example.com")
    assert login(client, "  Ana@Example.COM ").status_code == 302


def test_next_on_this_site_is_followed(client, make_user):
    make_user("ana@example.com")
    response = login(client, "ana@example.com", next_url="/admin/campaigns/?sort=1")
    assert response.headers["Location"] == "/admin/campaigns/?sort=1"


@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.example/admin/",
        "//evil.example/admin/",
        "/\\evil.example",
        "javascript:alert(1)",
        "http://localhost.evil.example/",
        "admin/",
    ],
)
def test_next_off_site_is_ignored(client, make_user, next_url):
    make_user("ana@example.com")
    response = login(client, "ana@example.com", next_url=next_url)
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"


def test_next_with_our_own_host_is_followed(client, make_user):
    make_user("ana@example.com")
    response = login(client, "ana@example.com", next_url="http://localhost/admin/audit/")
    assert response.headers["Location"] == "/admin/audit/"


def test_logged_in_user_visiting_login_goes_to_admin(client, make_user):
    make_user("ana@example.com")
    login(client, "ana@example.com")
    response = client.get("/login")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/admin/")


def test_deactivated_user_is_logged_out(client, make_user):
    user = make_user("ana@example.com")
    login(client, "ana@example.com")
    user.active = False
    db.session.commit()
    assert client.get("/admin/").status_code == 302
