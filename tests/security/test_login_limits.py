"""Failed logins: generic messages, audited, limited per account and per address."""

from __future__ import annotations

from common.security_support import audit_events, fresh_browser, take_redis_down
from common.support import PASSWORD, confirmation, csrf_token, login
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from ccadmin import keys
from ccadmin.extensions import db
from ccadmin.models import AdminUser
from ccadmin.security import login_limits
from ccadmin.security.login import LOGIN_FAILED, LOGIN_THROTTLED

WRONG = "not the password at all"


def logged_in(client) -> bool:
    return client.get("/admin/").status_code == 200


def test_unknown_email_wrong_password_and_inactive_read_the_same(client, make_user):
    make_user("ana@example.com")
    inactive = make_user("old@example.com")
    inactive.active = False
    db.session.commit()
    pages = []
    for email, password in (
        ("ana@example.com", WRONG),
        ("nobody@example.com", PASSWORD),
        ("old@example.com", PASSWORD),
    ):
        response = login(client, email, password)
        assert response.status_code == 200
        page = response.get_data(as_text=True)
        assert LOGIN_FAILED in page
        # Nothing tells which of the three it was.
        assert "inactive" not in page.lower() and "unknown" not in page.lower()
        pages.append(page.replace(email, "EMAIL"))
        assert not logged_in(client)
    failures = audit_events("login_failed")
    assert [(event.actor, event.after["email"], event.after["reason"]) for event in failures] == [
        ("anonymous", "ana@example.com", "wrong_password"),
        ("anonymous", "nobody@example.com", "unknown_email"),
        ("anonymous", "old@example.com", "inactive"),
    ]
    assert failures[1].target_id is None
    assert failures[2].target_id == str(inactive.id)
    assert all(event.client_ip == "127.0.0.1" for event in failures)
    # The password typed is never recorded.
    assert all(
        WRONG not in repr(event.after) and PASSWORD not in repr(event.after) for event in failures
    )


def test_account_is_locked_after_five_failures_even_with_the_right_password(
    client, make_user, redis_client
):
    make_user("ana@example.com")
    for _ in range(login_limits.ACCOUNT_LIMIT):
        assert LOGIN_FAILED in login(client, "ana@example.com", WRONG).get_data(as_text=True)
    # Any spelling of the same account shares the counter.
    blocked = login(client, "  ANA@example.com ", PASSWORD)
    assert blocked.status_code == 429
    assert LOGIN_THROTTLED in blocked.get_data(as_text=True)
    assert not logged_in(client)
    reasons = [event.after["reason"] for event in audit_events("login_failed")]
    assert reasons == ["wrong_password"] * login_limits.ACCOUNT_LIMIT + ["throttled"]
    key = keys.login_failures_key(login_limits.ACCOUNT, "ana@example.com")
    assert 0 < redis_client.ttl(key) <= login_limits.WINDOW_SECONDS
    # The counter is keyed by a digest, never by the typed text.
    assert b"ana@example.com" not in b"".join(redis_client.scan_iter())

    # Another account from the same address is not affected.
    make_user("bob@example.com")
    assert login(client, "bob@example.com").status_code == 302


def test_window_expiry_unlocks_and_success_resets_the_account(client, make_user, redis_client):
    make_user("ana@example.com")
    account = keys.login_failures_key(login_limits.ACCOUNT, "ana@example.com")
    for _ in range(login_limits.ACCOUNT_LIMIT):
        login(client, "ana@example.com", WRONG)
    assert login(client, "ana@example.com").status_code == 429
    redis_client.delete(account)  # what the window's expiry does
    login(client, "ana@example.com", WRONG)
    assert redis_client.get(account) == b"1"
    assert login(client, "ana@example.com").status_code == 302
    assert redis_client.get(account) is None


def test_address_is_limited_across_accounts(app, make_user, redis_client):
    make_user("ana@example.com")
    attacker = fresh_browser(app, "198.51.100.7")
    for number in range(login_limits.ADDRESS_LIMIT):
        login(attacker, f"guess{number}@example.com", WRONG)
    blocked = login(attacker, "ana@example.com", PASSWORD)
    assert blocked.status_code == 429
    assert not logged_in(attacker)
    # The real user, elsewhere, still gets in.
    assert login(fresh_browser(app), "ana@example.com").status_code == 302


def test_redis_down_fails_open(app, client, make_user):
    make_user("ana@example.com")
    take_redis_down(app)
    assert LOGIN_FAILED in login(client, "ana@example.com", WRONG).get_data(as_text=True)
    assert login(client, "ana@example.com").status_code == 302
    assert logged_in(client)
    assert [event.after["reason"] for event in audit_events("login_failed")] == ["wrong_password"]


def test_the_lock_says_when_it_ends_and_an_admin_can_lift_it(app, client, make_user):
    make_user("ana@example.com")
    make_user("boss@example.com", role="admin")
    for _ in range(login_limits.ACCOUNT_LIMIT):
        login(client, "ana@example.com", WRONG)
    blocked = login(client, "ana@example.com").get_data(as_text=True)
    assert "Try again in 15 minutes (from " in blocked and "ask an admin to unlock" in blocked

    admin = fresh_browser(app)
    assert login(admin, "boss@example.com").status_code == 302
    users = admin.get("/admin/users/").get_data(as_text=True)
    assert users.count("locked after failed logins") == 1
    ana = db.session.scalars(select(AdminUser).where(AdminUser.email == "ana@example.com")).one()
    boss = db.session.scalars(select(AdminUser).where(AdminUser.email == "boss@example.com")).one()
    details = admin.get(f"/admin/users/details/?id={ana.id}").get_data(as_text=True)
    assert "locked after failed logins" in details
    # Two selected, one of them locked: the confirmation counts the one it changes.
    page = confirmation(
        admin.post(
            "/admin/users/action/",
            data=MultiDict(
                [
                    ("action", "unlock"),
                    ("rowid", str(ana.id)),
                    ("rowid", str(boss.id)),
                    ("csrf_token", csrf_token(admin, "/admin/users/")),
                ]
            ),
        )
    )
    assert page is not None and ("confirm", "1") in page[1]
    admin.post(page[0], data=MultiDict(page[1]))
    assert "locked after failed logins" not in admin.get("/admin/users/").get_data(as_text=True)
    unlocked = audit_events("unlock")
    assert [(event.actor, event.target_id) for event in unlocked] == [
        ("boss@example.com", str(ana.id))
    ]
    assert unlocked[0].before["locked_for_seconds"] > 0
    assert login(fresh_browser(app), "ana@example.com").status_code == 302
