"""Every admin endpoint against every role: logins, 403s that are audited and change nothing,
ignored extra fields, redirects that stay on this host, and no file manager or Redis console."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from common.security_support import audit_events, database_state, fresh_browser, redis_state
from common.support import csrf_token, login

from ccadmin.extensions import db
from ccadmin.models import AdminUser, ApiKey, Campaign, ContentEntry

# Views only admins may change; editors change the rest. A new POST endpoint
# fails test_post_endpoints_are_all_classified until it is listed here or below.
ADMIN_WRITES = (
    "users.",
    "api_keys.",
    "management_tokens.",
    "campaigns.",
    "audit.",
    "metrics.requeue",
)
EDITOR_WRITES = ("content.", "campaign_tools.", "imports.", "change_requests.")
PUBLIC_ENDPOINTS = {
    "static",
    "admin.static",
    "vendor.plotly_js",
    "auth.login",
    "auth.logout",
    "auth.index",
    # Single sign-on: 404 unless a provider is configured (tests/test_single_sign_on.py).
    "auth.sso_start",
    "auth.sso_callback",
}
# The ingest API authenticates with management tokens, not logins; Prometheus's
# /metrics with CCADMIN_METRICS_TOKEN (tests/test_prometheus.py).
TOKEN_API = "manage."
SCRAPE = "prometheus."
TOKEN_API_DOCS = {"manage.openapi_document", "manage.reference", "manage.not_found"}


@pytest.fixture
def records(app) -> dict[str, int]:
    campaign = Campaign(slug="spring", name="Spring", is_default=True)
    db.session.add(campaign)
    db.session.flush()
    entry = ContentEntry(campaign_id=campaign.id, user_id="42", fields={"message": "Hello"})
    api_key = ApiKey(name="braze", prefix="cc_abcdefgh", secret_hash="0" * 64)
    db.session.add_all([entry, api_key])
    db.session.commit()
    return {"campaign": campaign.id, "entry": entry.id, "api_key": api_key.id}


def admin_rules(app, method: str):
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule):
        if rule.endpoint in PUBLIC_ENDPOINTS or method not in rule.methods:
            continue
        if rule.endpoint.startswith((TOKEN_API, SCRAPE)):
            continue
        assert rule.rule.startswith("/admin/"), rule.rule
        yield rule


def url_of(rule) -> str:
    """The rule's URL with placeholder arguments (1 for numbers, "x" for text)."""
    return re.sub(
        r"<(?:(\w+):)?(\w+)>",
        lambda match: (
            "1" if match.group(1) == "int" else ("csv" if "export" in match.group(2) else "x")
        ),
        rule.rule,
    )


def as_role(app, make_user, role: str):
    make_user(f"{role}@example.com", role=role)
    client = fresh_browser(app)
    assert login(client, f"{role}@example.com").status_code == 302
    return client


def test_post_endpoints_are_all_classified(app):
    for rule in admin_rules(app, "POST"):
        assert rule.endpoint.startswith(ADMIN_WRITES + EDITOR_WRITES), rule.endpoint


def test_every_admin_url_needs_a_login(app, client, records):
    token = csrf_token(client, "/login")
    for rule in admin_rules(app, "GET"):
        response = client.get(url_of(rule))
        assert response.status_code == 302, rule.rule
        assert urlsplit(response.headers["Location"]).path == "/login", rule.rule
    before = database_state()
    for rule in admin_rules(app, "POST"):
        response = client.post(url_of(rule), data={"csrf_token": token})
        assert response.status_code == 401, rule.rule
    assert database_state() == before


def test_every_ingest_url_needs_a_token(app, make_user, records):
    """/manage/v1 answers 401 JSON without a token, whatever the method; a session is no token."""
    client = as_role(app, make_user, "admin")
    before = database_state()
    checked = 0
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith(TOKEN_API) or rule.endpoint in TOKEN_API_DOCS:
            continue
        if rule.endpoint.startswith(TOKEN_API + "method_not_allowed"):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(url_of(rule), method=method, json={})
            assert response.status_code == 401, (method, rule.rule)
            assert response.json["error"] == "unauthorized", (method, rule.rule)
            assert response.headers["WWW-Authenticate"].startswith("Bearer"), rule.rule
            checked += 1
    assert checked >= 8
    assert database_state() == before


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_forbidden_posts_are_403_audited_and_change_nothing(
    app, make_user, records, redis_client, role
):
    client = as_role(app, make_user, role)
    forbidden = [
        rule
        for rule in admin_rules(app, "POST")
        if role == "viewer" or rule.endpoint.startswith(ADMIN_WRITES)
    ]
    assert forbidden
    for rule in forbidden:
        url = url_of(rule)
        token = csrf_token(client, "/logout")
        before, redis_before = database_state(audit=False), redis_state(redis_client)
        refused = len(audit_events("forbidden"))
        response = client.post(
            url,
            data={
                "csrf_token": token,
                "id": str(records["entry"]),
                "rowid": str(records["entry"]),
                "action": "delete",
                "name": "x",
                "role": "admin",
                "field_message": "Hacked",
            },
        )
        assert response.status_code == 403, rule.rule
        assert "Traceback" not in response.get_data(as_text=True)
        assert database_state(audit=False) == before, rule.rule
        assert redis_state(redis_client) == redis_before, rule.rule
        events = audit_events("forbidden")
        assert len(events) == refused + 1, rule.rule
        event = events[-1]
        assert (event.actor, event.target_type) == (f"{role}@example.com", "admin_endpoint")
        assert event.target_id == rule.endpoint
        assert event.after == {"method": "POST", "path": url}
        # The form's values are not recorded.
        assert "Hacked" not in repr(event.after)


def test_dashboard_json_and_requeue(app, make_user, records):
    viewer = as_role(app, make_user, "viewer")
    assert viewer.get("/admin/metrics/data?range=5m").status_code == 200
    anonymous = fresh_browser(app)
    assert anonymous.get("/admin/metrics/data?range=5m").status_code == 302
    editor = as_role(app, make_user, "editor")
    token = csrf_token(editor, "/logout")
    response = editor.post("/admin/metrics/requeue/publish-1", data={"csrf_token": token})
    assert response.status_code == 403
    assert audit_events("forbidden")[-1].target_id == "metrics.requeue"


def test_extra_form_fields_are_ignored(app, make_user, records):
    editor = as_role(app, make_user, "editor")
    other = Campaign(slug="other", name="Other")
    db.session.add(other)
    db.session.commit()
    url = f"/admin/content/edit/?id={records['entry']}"
    response = editor.post(
        url,
        data={
            "csrf_token": csrf_token(editor, url),
            "field_message": "Edited",
            "version": "99",
            "id": "999",
            "user_id": "attacker",
            "campaign_id": str(other.id),
            "updated_by": "someone@else",
            "deleted": "y",
            "role": "admin",
        },
    )
    assert response.status_code == 302
    entry = db.session.get(ContentEntry, records["entry"])
    db.session.refresh(entry)
    assert (entry.id, entry.version, entry.user_id, entry.campaign_id) == (
        records["entry"],
        2,
        "42",
        records["campaign"],
    )
    assert entry.fields == {"message": "Edited"}
    assert (entry.updated_by, entry.deleted) == ("editor@example.com", False)
    editor_user = db.session.scalars(db.select(AdminUser).filter_by(role="editor")).one()
    assert editor_user.role == "editor"

    admin = as_role(app, make_user, "admin")
    campaign = db.session.get(Campaign, records["campaign"])
    version = campaign.version
    url = f"/admin/campaigns/edit/?id={campaign.id}"
    response = admin.post(
        url,
        data={
            "csrf_token": csrf_token(admin, url),
            "slug": "renamed",
            "name": "Spring",
            "field_schema_text": "message:140",
            "fallback_policy": "default",
            "max_age": "60",
            "active": "y",
            "is_default": "y",
            "version": "77",
            "id": "555",
        },
    )
    assert response.status_code == 302
    db.session.refresh(campaign)
    assert (campaign.id, campaign.slug, campaign.version) == (
        records["campaign"],
        "spring",
        version + 1,
    )

    # A role posted to the login form is just an unknown field.
    viewer = fresh_browser(app)
    make_user("view@example.com", role="viewer")
    token = csrf_token(viewer, "/login")
    viewer.post(
        "/login",
        data={
            "email": "view@example.com",
            "password": "correct horse battery staple",
            "role": "admin",
            "csrf_token": token,
        },
    )
    user = db.session.scalars(db.select(AdminUser).filter_by(email="view@example.com")).one()
    db.session.refresh(user)
    assert user.role == "viewer"


OFF_SITE = [
    "https://evil.example/admin/",
    "//evil.example/",
    "/\\evil.example",
    "\\\\evil.example",
    "javascript:alert(1)",
    " javascript:alert(1)",
    "https:evil.example",
    "http://localhost.evil.example/",
]


@pytest.mark.parametrize("target", OFF_SITE)
def test_redirect_targets_stay_on_this_host(app, make_user, records, target):
    editor = as_role(app, make_user, "editor")
    token = csrf_token(editor, "/logout")
    responses = [
        editor.post(
            "/admin/content/delete/",
            data={"id": str(records["entry"]), "url": target, "csrf_token": token},
        ),
        editor.post(
            f"/admin/content/edit/?id={records['entry']}&url={target}",
            data={"field_message": "Edited", "csrf_token": token},
        ),
        editor.post(
            "/admin/content/action/",
            data={"action": "delete", "rowid": "0", "url": target, "csrf_token": token},
        ),
    ]
    for response in responses:
        assert response.status_code == 302
        location = urlsplit(response.headers["Location"])
        assert location.netloc in ("", "localhost"), response.headers["Location"]
        assert location.scheme in ("", "http"), response.headers["Location"]
    login_page = fresh_browser(app)
    response = login(login_page, "editor@example.com", next_url=target)
    assert response.headers["Location"] == "/admin/"


def test_no_file_manager_or_redis_console(app, make_user):
    admin = as_role(app, make_user, "admin")
    endpoints = " ".join(rule.endpoint for rule in app.url_map.iter_rules())
    assert "file" not in endpoints and "redis" not in endpoints
    for url in (
        "/admin/fileadmin/",
        "/admin/files/",
        "/admin/file/",
        "/admin/static_files/",
        "/admin/rediscli/",
        "/admin/redis/",
        "/admin/rediscli/run/",
    ):
        assert admin.get(url).status_code == 404, url
        assert admin.post(url, data={"cmd": "FLUSHALL"}).status_code in (400, 404), url
