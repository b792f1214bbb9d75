"""Every role against every endpoint of every admin view: allowed, or 403 and nothing changes."""

from __future__ import annotations

import pytest
from common.support import PASSWORD, csrf_token, login, post_confirmed
from sqlalchemy import select

from ccadmin.extensions import db
from ccadmin.models import AdminUser, ApiKey, AuditEvent, Campaign, ContentEntry, OutboxEvent
from ccadmin.models.credentials import hash_secret
from ccadmin.models.outbox import KIND_API_KEYS
from ccadmin.models.users import ROLE_RANK, ROLES

# The role each view needs to read and to write (None: nobody writes).
READ_ROLE = {
    "content": "viewer",
    "campaigns": "viewer",
    "audit": "viewer",
    "users": "admin",
    "api_keys": "admin",
}
WRITE_ROLE = {
    "content": "editor",
    "campaigns": "admin",
    "audit": None,
    "users": "admin",
    "api_keys": "admin",
}
EXPORTS = {"content", "campaigns"}


@pytest.fixture
def records(app, make_user) -> dict[str, int]:
    """One record of each kind, and their ids by view name."""
    campaign = Campaign(slug="spring", name="Spring", is_default=True)
    db.session.add(campaign)
    db.session.flush()
    entry = ContentEntry(campaign_id=campaign.id, user_id="42", fields={"message": "Hello"})
    api_key = ApiKey(name="braze", prefix="cc_abcdefgh", secret_hash="0" * 64)
    audit = AuditEvent(actor="someone@example.com", action="create", target_type="campaign")
    db.session.add_all([entry, api_key, audit])
    db.session.commit()
    target = make_user("target@example.com", role="viewer")
    return {
        "content": entry.id,
        "campaigns": campaign.id,
        "audit": audit.id,
        "users": target.id,
        "api_keys": api_key.id,
    }


def allowed(role: str, needed: str | None) -> bool:
    return needed is not None and ROLE_RANK[role] >= ROLE_RANK[needed]


def as_role(client, make_user, role: str):
    make_user(f"{role}@example.com", role=role)
    assert login(client, f"{role}@example.com").status_code == 302
    return client


def database_state(audit: bool = True) -> dict[str, list]:
    """Every row of every table (without the audit log when `audit` is False)."""
    db.session.expire_all()
    return {
        table.name: sorted(tuple(map(repr, row)) for row in db.session.execute(select(table)))
        for table in db.metadata.sorted_tables
        if audit or table.name != AuditEvent.__tablename__
    }


def forbidden_events() -> list[AuditEvent]:
    return db.session.scalars(select(AuditEvent).where(AuditEvent.action == "forbidden")).all()


def write_requests(view: str, record_id: int) -> list[tuple[str, str, dict]]:
    """(method, url, form) for every write endpoint the view exposes."""
    create_form = {
        "content": {"campaign_id": "1", "user_id": "77", "field_message": "New"},
        "campaigns": {
            "slug": "autumn",
            "name": "Autumn",
            "field_schema_text": "message:140",
            "fallback_policy": "default",
            "max_age": "60",
        },
        "audit": {"actor": "x", "action": "y", "target_type": "z"},
        "users": {"email": "new@example.com", "role": "admin", "password": "x" * 20},
        "api_keys": {"name": "new key"},
    }[view]
    edit_form = {
        "content": {"field_message": "Changed"},
        "campaigns": {**create_form, "name": "Changed"},
        "audit": {"actor": "changed"},
        "users": {"email": "target@example.com", "role": "admin", "active": "y"},
        "api_keys": {"name": "changed"},
    }[view]
    action = "revoke" if view == "api_keys" else "delete"
    base = f"/admin/{view}"
    return [
        ("GET", f"{base}/new/", {}),
        ("POST", f"{base}/new/", create_form),
        ("GET", f"{base}/edit/?id={record_id}", {}),
        ("POST", f"{base}/edit/?id={record_id}", edit_form),
        ("POST", f"{base}/delete/", {"id": str(record_id)}),
        ("POST", f"{base}/action/", {"action": action, "rowid": str(record_id)}),
        ("POST", f"{base}/ajax/update/", {"list_form_pk": str(record_id), "name": "inline"}),
    ]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("view", sorted(READ_ROLE))
def test_read_endpoints(client, make_user, records, role, view):
    as_role(client, make_user, role)
    record_id = records[view]
    may_read = allowed(role, READ_ROLE[view])
    for url in (f"/admin/{view}/", f"/admin/{view}/details/?id={record_id}"):
        response = client.get(url)
        assert response.status_code == (200 if may_read else 403), url
    export = client.get(f"/admin/{view}/export/csv/")
    if not may_read:
        assert export.status_code == 403
    else:
        # Views without export answer with Flask-Admin's "Permission denied" redirect.
        assert export.status_code == (200 if view in EXPORTS else 302)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("view", sorted(READ_ROLE))
def test_write_endpoints(client, make_user, records, role, view):
    as_role(client, make_user, role)
    may_write = allowed(role, WRITE_ROLE[view])
    for method, url, form in write_requests(view, records[view]):
        before = database_state(audit=False)
        refused_before = len(forbidden_events())
        if method == "GET":
            response = client.get(url)
        else:
            token = csrf_token(client, "/logout")
            response = client.post(url, data={**form, "csrf_token": token})
        if not may_write:
            assert response.status_code == 403, (method, url)
            assert database_state(audit=False) == before, (method, url)
            # A refused write is audited; a refused page view is not.
            assert len(forbidden_events()) == refused_before + (method == "POST")
        elif url.endswith("/ajax/update/"):
            # Inline editing is off everywhere, even for those who may write.
            assert response.status_code == 404
            assert database_state(audit=False) == before
        else:
            assert response.status_code in (200, 302), (method, url, response.status_code)


def test_allowed_writes_take_effect(client, make_user, records):
    as_role(client, make_user, "editor")
    token = csrf_token(client, "/logout")
    response = client.post(
        "/admin/content/action/",
        data={
            "action": "delete",
            "rowid": str(records["content"]),
            "confirm": "1",
            "csrf_token": token,
        },
    )
    assert response.status_code == 302
    entry = db.session.get(ContentEntry, records["content"])
    db.session.refresh(entry)
    assert entry.deleted and entry.version == 2


def test_bulk_user_delete_asks_with_the_count_first(client, make_user, records):
    as_role(client, make_user, "admin")
    second = make_user("second@example.com", role="viewer")
    data = {
        "action": "delete",
        "rowid": [str(records["users"]), str(second.id)],
        "csrf_token": csrf_token(client, "/admin/users/"),
    }
    asked = client.post("/admin/users/action/", data=data)
    assert asked.status_code == 200
    assert "Delete 2 users?" in asked.get_data(as_text=True)
    assert db.session.get(AdminUser, second.id) is not None
    assert post_confirmed(client, "/admin/users/action/", data).status_code == 302
    db.session.expire_all()
    assert db.session.get(AdminUser, second.id) is None
    assert db.session.get(AdminUser, records["users"]) is None


def test_forbidden_post_without_token_changes_nothing(client, make_user, records):
    as_role(client, make_user, "viewer")
    before = database_state()
    response = client.post("/admin/content/delete/", data={"id": str(records["content"])})
    assert response.status_code in (400, 403)
    assert database_state() == before


@pytest.mark.parametrize("role", ROLES)
def test_menu_lists_only_what_the_role_may_open(client, make_user, records, role):
    as_role(client, make_user, role)
    page = client.get("/admin/").get_data(as_text=True)
    assert 'href="/admin/content/"' in page and 'href="/admin/audit/"' in page
    for view in ("users", "api_keys"):
        assert (f'href="/admin/{view}/"' in page) is (role == "admin")
    content = client.get("/admin/content/").get_data(as_text=True)
    assert ('href="/admin/content/new/' in content) is (role != "viewer")


def test_api_key_secret_is_shown_once_and_stored_hashed(client, make_user, records):
    as_role(client, make_user, "admin")
    token = csrf_token(client, "/admin/api_keys/new/")
    response = client.post("/admin/api_keys/new/", data={"name": "Braze prod", "csrf_token": token})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    page = response.get_data(as_text=True)
    secret = page.split('id="api-key-secret">', 1)[1].split("<", 1)[0]
    assert secret.startswith("cc_") and len(secret) > 30
    api_key = db.session.scalars(select(ApiKey).where(ApiKey.name == "Braze prod")).one()
    assert api_key.secret_hash == hash_secret(secret)
    assert secret.startswith(api_key.prefix)
    listing = client.get("/admin/api_keys/").get_data(as_text=True)
    assert secret not in listing and api_key.prefix in listing
    assert len(api_keys_events()) == 1


def api_keys_events() -> list[OutboxEvent]:
    return db.session.scalars(select(OutboxEvent).where(OutboxEvent.kind == KIND_API_KEYS)).all()


def test_revoking_a_key_keeps_it_listed(client, make_user, records):
    as_role(client, make_user, "admin")
    token = csrf_token(client, "/admin/api_keys/")
    data = {"action": "revoke", "rowid": str(records["api_keys"]), "csrf_token": token}
    asked = client.post("/admin/api_keys/action/", data=data).get_data(as_text=True)
    assert "Revoke: this changes 1 API keys." in asked
    assert db.session.get(ApiKey, records["api_keys"]).revoked_at is None
    response = post_confirmed(client, "/admin/api_keys/action/", data)
    assert "1 key(s) revoked." in client.get(response.location).get_data(as_text=True)
    api_key = db.session.get(ApiKey, records["api_keys"])
    db.session.refresh(api_key)
    assert api_key.revoked_at is not None
    assert len(api_keys_events()) == 1
    audit = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "revoke")).one()
    assert audit.before["revoked"] is False and audit.after["revoked"] is True
    assert "braze" in client.get("/admin/api_keys/").get_data(as_text=True)


def test_users_password_is_hashed_and_never_shown(client, make_user, records):
    as_role(client, make_user, "admin")
    token = csrf_token(client, "/admin/users/new/")
    short = client.post(
        "/admin/users/new/",
        data={
            "email": "new@example.com",
            "role": "editor",
            "password": "short",
            "csrf_token": token,
        },
    )
    assert "Field must be between 12 and 1024 characters long." in short.get_data(as_text=True)
    response = client.post(
        "/admin/users/new/",
        data={
            "email": "New@Example.com",
            "role": "editor",
            "password": PASSWORD,
            "csrf_token": token,
        },
    )
    assert response.status_code == 302
    user = db.session.scalars(select(AdminUser).where(AdminUser.email == "new@example.com")).one()
    assert user.check_password(PASSWORD) and user.role == "editor"
    listing = client.get("/admin/users/").get_data(as_text=True)
    assert user.password_hash not in listing and "scrypt" not in listing
    audit = db.session.scalars(
        select(AuditEvent).where(AuditEvent.target_type == "admin_user")
    ).one()
    assert "password_hash" not in (audit.after or {})
