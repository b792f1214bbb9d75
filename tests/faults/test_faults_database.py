"""Database faults: the database unreachable (case 6)."""

from __future__ import annotations

import dataclasses
import os
import time

import pytest
from common.api_support import ENV_KEY, call
from common.fault_support import DatabaseOutage, admin_save, differences, wait_ready
from common.publishing_support import make_campaign, save_entry
from common.support import login, wait_until

from ccadmin.app import create_app
from ccadmin.extensions import db

AUTH = {"X-API-Key": ENV_KEY}


@pytest.fixture
def outage(fault_app):
    database = DatabaseOutage(os.environ["DATABASE_URL"])
    yield database
    if database.proxy is not None:
        database.proxy.down()
    elif not database.path.exists():
        database.up()


def test_database_down(fault_app, private_redis, processes, make_user, outage):
    """Case 6: the API keeps serving, the admin shows a clear 503, both recover alone."""
    client = private_redis.start()
    campaign = make_campaign()
    save_entry(campaign, "1", "live before the outage")
    make_user("ed@example.com", role="editor")
    processes.worker({"DATABASE_URL": outage.url})
    wait_ready(client)
    wait_until(lambda: not differences(client, "spring"), timeout=20)
    _, port = processes.api()
    assert call(port, "/data?user_id=1", headers=AUTH).status == 200

    settings = dataclasses.replace(fault_app.config["CCADMIN_SETTINGS"])
    admin_app = create_app(
        {"TESTING": True, "CCADMIN_SETTINGS": settings, "SQLALCHEMY_DATABASE_URI": outage.url}
    )
    browser = admin_app.test_client()
    # Each request gets its own app context (and session), as in production.
    login(browser, "ed@example.com")
    assert browser.get("/admin/content/").status_code == 200

    outage.down()
    with admin_app.app_context():
        db.engine.dispose()  # SQLite: no pooled handle may keep the moved file open
    down_at = time.monotonic()
    page = browser.get("/admin/content/")
    text = page.get_data(as_text=True)
    assert page.status_code == 503
    assert "Database unavailable" in text
    assert page.headers["Retry-After"]
    for leak in ("SELECT", "Traceback", "sqlalchemy", "psycopg2", "sqlite3"):
        assert leak not in text
    answers = [call(port, "/data?user_id=1", headers=AUTH) for _ in range(50)]
    assert {answer.status for answer in answers} == {200}
    assert call(port, "/readyz").status == 200

    outage.up()
    wait_until(lambda: browser.get("/admin/content/").status_code == 200, timeout=10)
    recovery = time.monotonic() - down_at
    entry_id = db.session.execute(db.text("SELECT id FROM content_entry")).scalar()
    db.session.rollback()
    assert admin_save(browser, campaign.id, "1", "after", entry_id).status_code == 302
    wait_until(lambda: call(port, "/data?user_id=1", headers=AUTH).json()["version"] == 2, 20)
    print(
        f"case 6: 50 API answers during the outage, all 200; admin back {recovery:.1f} s "
        "after the outage began (no restart)"
    )
