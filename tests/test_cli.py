"""Operator commands through Flask's CLI runner, against the real database and Redis."""

from __future__ import annotations

import dataclasses
import json

from common.publishing_support import make_campaign, publish_pending, save_entry, stored_entry
from common.support import PASSWORD, free_port, invoke
from sqlalchemy import func, select

from ccadmin import keys
from ccadmin.app import create_app
from ccadmin.extensions import db
from ccadmin.models import AdminUser, ApiKey, OutboxEvent
from ccadmin.models.credentials import hash_secret
from workers import redis_writes


def test_create_user_creates_then_updates(app, monkeypatch):
    result = invoke(
        app, "create-user", "Ops@Example.com", "--role", "editor", "--password", PASSWORD
    )
    assert result.exit_code == 0, result.output
    user = db.session.execute(select(AdminUser)).scalar_one()
    assert (user.email, user.role) == ("ops@example.com", "editor")
    assert user.check_password(PASSWORD)
    assert PASSWORD not in user.password_hash

    monkeypatch.setenv("CCADMIN_ADMIN_PASSWORD", "another long password")
    with create_app({"TESTING": True}).app_context() as context:
        result = invoke(context.app, "create-user", "ops@example.com", "--role", "admin")
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    user = db.session.execute(select(AdminUser)).scalar_one()
    assert user.role == "admin"
    assert user.check_password("another long password")


def test_create_user_prompts_and_refuses_short_passwords(app):
    result = invoke(app, "create-user", "a@example.com", "--role", "viewer", "--password", "short")
    assert result.exit_code != 0
    assert "at least 12 characters" in result.output
    result = invoke(
        app, "create-user", "a@example.com", "--role", "viewer", input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    assert db.session.execute(select(AdminUser.role)).scalar_one() == "viewer"
    assert invoke(app, "create-user", "b@example.com", "--role", "root").exit_code != 0


def test_create_api_key_prints_the_secret_once_and_stores_its_hash(app):
    make_campaign("spring")
    result = invoke(app, "create-api-key", "braze", "--campaign", "spring")
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    assert secret.startswith("cc_")
    assert result.output.count(secret) == 1
    api_key = db.session.execute(select(ApiKey)).scalar_one()
    assert api_key.secret_hash == hash_secret(secret)
    assert secret not in (api_key.secret_hash, api_key.prefix)
    assert api_key.campaigns == ["spring"]
    assert db.session.execute(select(OutboxEvent.id).where(OutboxEvent.kind == "api_keys")).first()


def test_create_api_key_registers_a_known_secret(app):
    result = invoke(app, "create-api-key", "ops", "--secret", "cc_known-secret-for-ops")
    assert result.exit_code == 0, result.output
    assert db.session.execute(select(ApiKey.secret_hash)).scalar_one() == hash_secret(
        "cc_known-secret-for-ops"
    )
    again = invoke(app, "create-api-key", "ops2", "--secret", "cc_known-secret-for-ops")
    assert again.exit_code != 0
    assert invoke(app, "create-api-key", "x", "--campaign", "nope").exit_code != 0


def test_publish_all_rebuilds_and_sets_ready(app, redis_client):
    campaign = make_campaign()
    save_entry(campaign, "1", "hello")
    invoke(app, "create-api-key", "braze")
    redis_client.flushdb()
    result = invoke(app, "publish", "--all")
    assert result.exit_code == 0, result.output
    assert "1 entries" in result.output
    assert json.loads(redis_client.get(keys.READY))["api_keys"] == 1
    assert stored_entry(redis_client, "spring", "1")[0] == 1
    assert redis_client.hlen(keys.API_KEYS) == 1
    assert invoke(app, "publish").exit_code != 0


def test_publish_pending_wakes_the_drainers_for_unpublished_events(app, redis_client):
    campaign = make_campaign()
    redis_client.delete(keys.PUBLISH_WAKE)
    settings = app.config["CCADMIN_SETTINGS"]
    app.config["CCADMIN_SETTINGS"] = dataclasses.replace(
        settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"
    )
    try:
        save_entry(campaign, "1", "one")
        save_entry(campaign, "2", "two")
    finally:
        app.config["CCADMIN_SETTINGS"] = settings
    assert not redis_client.exists(keys.PUBLISH_WAKE)

    result = invoke(app, "publish", "--pending")
    assert result.exit_code == 0, result.output
    assert "for 3 unpublished outbox events" in result.output  # the campaign's and both saves
    assert redis_client.lrange(keys.PUBLISH_WAKE, 0, -1) == [b"1"]
    assert publish_pending() == 3
    assert [stored_entry(redis_client, "spring", user)[0] for user in ("1", "2")] == [1, 1]
    assert db.session.scalar(select(func.count()).where(OutboxEvent.published_at.is_(None))) == 0


def test_publish_pending_fails_when_redis_is_unreachable(app):
    settings = app.config["CCADMIN_SETTINGS"]
    app.config["CCADMIN_SETTINGS"] = dataclasses.replace(
        settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"
    )
    try:
        result = invoke(app, "publish", "--pending")
    finally:
        app.config["CCADMIN_SETTINGS"] = settings
    assert result.exit_code != 0
    assert "Redis is unreachable; no worker was woken" in result.output


def test_reconcile_repairs_deleted_stale_and_orphan_entries(app, redis_client):
    assert invoke(app, "seed", "--users", "20").exit_code == 0
    assert invoke(app, "publish", "--all").exit_code == 0
    good = stored_entry(redis_client, "default", "3")
    redis_client.delete(keys.entry_key("default", "5"))
    stale_key = keys.entry_key("default", "7")
    version, body = stored_entry(redis_client, "default", "7")
    redis_client.hset(
        stale_key, mapping={keys.ENTRY_VERSION_FIELD: 0, keys.ENTRY_BODY_FIELD: b"old"}
    )
    redis_writes.write_entry(redis_client, keys.entry_key("default", "ghost"), 1, b"{}")

    result = invoke(app, "reconcile")
    assert result.exit_code == 0, result.output
    assert "missing: 1" in result.output
    assert "outdated: 1" in result.output
    assert "orphans: 1" in result.output
    assert "repaired: 3" in result.output
    assert stored_entry(redis_client, "default", "5")[0] == 1
    assert stored_entry(redis_client, "default", "7") == (version, body)
    assert stored_entry(redis_client, "default", "3") == good
    assert not redis_client.exists(keys.entry_key("default", "ghost"))

    again = invoke(app, "reconcile")
    assert "repaired: 0" in again.output
