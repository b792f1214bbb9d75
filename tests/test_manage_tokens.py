"""Management tokens: created once in the admin, hashed, scoped, revocable, rate limited."""

from __future__ import annotations

import time
from dataclasses import replace

from common.manage_support import SCHEMA, bearer, make_token
from common.publishing_support import make_campaign
from common.support import csrf_token, login, post_confirmed
from sqlalchemy import select

from ccadmin.extensions import db
from ccadmin.models import ApiKey, AuditEvent, ManagementToken
from ccadmin.models.api_keys import new_key_secret
from ccadmin.models.credentials import hash_secret
from ccadmin.models.management_tokens import SCOPE_READ

PAGE = "/admin/management-tokens/"
ENTRY = "/manage/v1/campaigns/{slug}/content/1"


def test_admin_creates_a_token_shown_once_and_stored_hashed(client, make_user):
    make_campaign("spring", field_schema=SCHEMA)
    make_user("admin@example.com", role="admin")
    login(client, "admin@example.com")
    response = client.post(
        f"{PAGE}new/",
        data={
            "name": "crm",
            "scope": "write",
            "campaigns": ["spring"],
            "source": "crm-2026",
            "csrf_token": csrf_token(client, f"{PAGE}new/"),
        },
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    page = response.get_data(as_text=True)
    secret = page.split('id="management-token-secret">', 1)[1].split("<", 1)[0]
    assert secret.startswith("ccm_") and len(secret) > 40
    token = db.session.scalars(select(ManagementToken)).one()
    assert token.secret_hash == hash_secret(secret) and token.campaigns == ["spring"]
    assert token.event_source == "crm-2026"
    assert token.created_by == "admin@example.com" and token.last_used_at is None
    listing = client.get(PAGE).get_data(as_text=True)
    assert secret not in listing and token.prefix in listing
    assert 'href="/manage/v1/reference"' in listing
    assert client.get("/manage/v1/campaigns", headers=bearer(secret)).status_code == 200
    db.session.refresh(token)
    assert token.last_used_at is not None
    assert db.session.scalars(select(AuditEvent.action)).all() == ["create"]


def test_editors_cannot_see_or_create_tokens(client, make_user):
    make_user("editor@example.com", role="editor")
    login(client, "editor@example.com")
    assert client.get(PAGE).status_code == 403
    assert client.post(f"{PAGE}new/", data={"name": "x"}).status_code in (400, 403)
    assert db.session.scalars(select(ManagementToken)).all() == []


def test_revoked_tokens_and_api_keys_are_refused(client, make_user):
    make_campaign("spring", field_schema=SCHEMA)
    secret = make_token()
    assert client.get("/manage/v1/campaigns", headers=bearer(secret)).status_code == 200
    make_user("admin@example.com", role="admin")
    login(client, "admin@example.com")
    token = db.session.scalars(select(ManagementToken)).one()
    revoke = post_confirmed(
        client,
        f"{PAGE}action/",
        {"action": "revoke", "rowid": str(token.id), "csrf_token": csrf_token(client, PAGE)},
    )
    assert "1 token(s) revoked." in client.get(revoke.location).get_data(as_text=True)
    refused = client.get("/manage/v1/campaigns", headers=bearer(secret))
    assert refused.status_code == 401 and refused.json["error"] == "unauthorized"
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    # An endpoint API key is not a management token.
    key = new_key_secret()
    db.session.add(ApiKey(name="braze", prefix=key[:11], secret_hash=hash_secret(key)))
    db.session.commit()
    assert client.get("/manage/v1/campaigns", headers=bearer(key)).status_code == 401
    assert client.get("/manage/v1/campaigns").status_code == 401


def test_scopes_limit_campaigns_and_writes(client):
    make_campaign("spring", field_schema=SCHEMA)
    make_campaign("autumn", is_default=False, field_schema=SCHEMA)
    reader = make_token("reader", scope=SCOPE_READ)
    spring_only = make_token("spring-writer", campaigns=["spring"])
    body = {"fields": {"message": "Hi"}}
    read_only = client.put(ENTRY.format(slug="spring"), json=body, headers=bearer(reader))
    assert read_only.status_code == 403 and read_only.json["error"] == "forbidden"
    other = client.put(ENTRY.format(slug="autumn"), json=body, headers=bearer(spring_only))
    assert other.status_code == 403
    mine = client.put(ENTRY.format(slug="spring"), json=body, headers=bearer(spring_only))
    assert mine.status_code == 201
    assert client.get(ENTRY.format(slug="spring"), headers=bearer(reader)).status_code == 200
    listed = client.get("/manage/v1/campaigns", headers=bearer(spring_only)).json
    assert [campaign["slug"] for campaign in listed["campaigns"]] == ["spring"]
    one = client.get("/manage/v1/campaigns/spring", headers=bearer(reader)).json
    assert one["fields"] == SCHEMA and one["counts"] == {"entries": 1, "estimated": False}
    assert one["fallback_policy"] == "default"


def test_rate_limit_answers_429_with_retry_after(app, client):
    make_campaign("spring", field_schema=SCHEMA)
    app.config["CCADMIN_SETTINGS"] = replace(app.config["CCADMIN_SETTINGS"], manage_rate_limit=3)
    secret = make_token()
    other = make_token("other")
    # The window is a clock minute: start well inside one, so all four count together.
    while time.time() % 60 > 55:
        time.sleep(0.5)
    statuses = [
        client.get("/manage/v1/campaigns", headers=bearer(secret)).status_code for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    limited = client.get("/manage/v1/campaigns", headers=bearer(secret))
    assert limited.json["error"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # Per token: another token still has its own window.
    assert client.get("/manage/v1/campaigns", headers=bearer(other)).status_code == 200
