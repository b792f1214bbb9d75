"""Passwords: at least 12 characters everywhere they are set, scrypt, rehashed on login."""

from __future__ import annotations

import pytest
from common.support import PASSWORD, csrf_token, login
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from ccadmin.extensions import db
from ccadmin.models import AdminUser
from ccadmin.security.login import CURRENT_HASH_METHOD, needs_rehash


def test_new_hashes_are_scrypt(make_user):
    user = make_user("ana@example.com")
    assert user.password_hash.startswith("scrypt:")
    assert CURRENT_HASH_METHOD.startswith("scrypt:")
    assert not needs_rehash(user.password_hash)


def test_an_old_hash_is_replaced_at_login(client, make_user):
    user = make_user("ana@example.com")
    user.password_hash = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
    db.session.commit()
    assert needs_rehash(user.password_hash)
    assert login(client, "ana@example.com").status_code == 302
    db.session.refresh(user)
    assert user.password_hash.split("$", 1)[0] == CURRENT_HASH_METHOD
    assert user.check_password(PASSWORD)


def test_a_failed_login_does_not_rehash(client, make_user):
    user = make_user("ana@example.com")
    old = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
    user.password_hash = old
    db.session.commit()
    login(client, "ana@example.com", "wrong password, long")
    db.session.refresh(user)
    assert user.password_hash == old


@pytest.mark.parametrize("password", ["", "short", "eleven char"])
def test_users_view_refuses_short_passwords(client, make_user, password):
    make_user("boss@example.com", role="admin")
    target = make_user("ana@example.com", role="editor")
    old_hash = target.password_hash
    login(client, "boss@example.com")
    token = csrf_token(client, "/admin/users/new/")
    created = client.post(
        "/admin/users/new/",
        data={
            "email": "new@example.com",
            "role": "viewer",
            "password": password,
            "csrf_token": token,
        },
    )
    assert created.status_code == 200
    assert db.session.scalar(select(AdminUser).where(AdminUser.email == "new@example.com")) is None
    if password:
        edited = client.post(
            f"/admin/users/edit/?id={target.id}",
            data={
                "email": "ana@example.com",
                "role": "editor",
                "active": "y",
                "password": password,
                "csrf_token": token,
            },
        )
        assert "Field must be between 12 and 1024 characters long." in edited.get_data(as_text=True)
        db.session.refresh(target)
        assert target.password_hash == old_hash


def test_cli_refuses_short_passwords(app):
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["create-user", "ana@example.com", "--role", "admin", "--password", "eleven char"]
    )
    assert result.exit_code != 0
    assert "at least 12 characters" in result.output
    assert db.session.scalar(select(AdminUser)) is None
