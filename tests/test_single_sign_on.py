"""Single sign-on against a real OpenID Connect provider on loopback (common/oidc_provider.py).

The admin runs in this process; the browser's part (the provider's login
form) is played by `requests`, and the app talks to the provider over HTTP.
"""

from __future__ import annotations

import dataclasses
import time
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests
from common.oidc_provider import OidcProvider, oidc_provider  # noqa: F401
from common.security_support import audit_events
from common.support import PASSWORD, login
from sqlalchemy import select

from ccadmin.config import ConfigError, load
from ccadmin.extensions import db
from ccadmin.models import AdminUser
from ccadmin.security import sessions

CALLBACK = "http://localhost/login/sso/callback"


@pytest.fixture
def provider(app, oidc_provider: OidcProvider) -> OidcProvider:  # noqa: F811
    """The provider, and the app configured to sign in with it."""
    oidc_provider.redirect_uris.append(CALLBACK)
    oidc_provider.add_user("ann", email="ann@example.com", groups=["cc-editors", "staff"])
    oidc_provider.add_user("bob", email="bob@example.com", groups=["staff"])
    configure(app, oidc_provider)
    return oidc_provider


def configure(app, provider: OidcProvider, **changes) -> None:
    app.config["CCADMIN_SETTINGS"] = dataclasses.replace(
        app.config["CCADMIN_SETTINGS"],
        oidc_issuer=provider.issuer,
        oidc_client_id=provider.client_id,
        oidc_client_secret=provider.client_secret,
        oidc_name="Test IdP",
        oidc_admin_groups=("cc-admins",),
        oidc_editor_groups=("cc-editors",),
        oidc_viewer_groups=("cc-viewers",),
        **changes,
    )


def at_provider(client, username: str, next_url: str | None = None) -> str:
    """Start a sign-in and sign in at the provider's form; the callback URL it sends back."""
    start = "/login/sso" + (f"?{urlencode({'next': next_url})}" if next_url else "")
    response = client.get(start)
    assert response.status_code == 302, response.get_data(as_text=True)
    authorize = response.headers["Location"]
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"]
    assert query["state"] and query["nonce"]
    granted = requests.post(authorize, data={"username": username}, allow_redirects=False)
    assert granted.status_code == 302, granted.text
    return granted.headers["Location"]


def come_back(client, callback: str):
    parts = urlsplit(callback)
    return client.get(f"{parts.path}?{parts.query}")


def sign_in(client, username: str, next_url: str | None = None):
    return come_back(client, at_provider(client, username, next_url))


def signed_in_as(client) -> str | None:
    page = client.get("/admin/")
    if page.status_code != 200:
        return None
    user_id = client.get_cookie("session") and _session_user(client)
    return db.session.get(AdminUser, int(user_id)).email if user_id else None


def _session_user(client) -> str | None:
    with client.session_transaction() as session:
        return session.get("_user_id")


def user(email: str) -> AdminUser | None:
    db.session.expire_all()
    return db.session.scalars(select(AdminUser).where(AdminUser.email == email)).first()


def test_a_good_sign_in_creates_the_user_with_the_mapped_role(client, provider):
    response = sign_in(client, "ann", next_url="/admin/content/")
    assert response.status_code == 302 and response.headers["Location"] == "/admin/content/"
    assert signed_in_as(client) == "ann@example.com"
    ann = user("ann@example.com")
    assert (ann.role, ann.has_password, ann.sso_issuer) == ("editor", False, provider.issuer)
    created = audit_events("create")
    assert created[-1].after == {
        "email": "ann@example.com",
        "role": "editor",
        "single_sign_on": True,
    }
    # An editor, not an admin: the users page is not theirs.
    assert client.get("/admin/users/").status_code == 403


def test_role_changes_at_the_provider_apply_at_the_next_sign_in(client, provider):
    sign_in(client, "ann")
    provider.add_user("ann", email="ann@example.com", groups=["cc-admins", "cc-viewers"])
    client.post("/logout", data={"csrf_token": _csrf(client)})
    sign_in(client, "ann")
    assert user("ann@example.com").role == "admin"  # the highest mapped role wins
    changed = audit_events("update")[-1]
    assert (changed.actor, changed.before["role"], changed.after["role"]) == (
        "single sign-on",
        "editor",
        "admin",
    )


def _csrf(client) -> str:
    from common.support import csrf_token

    return csrf_token(client, "/logout")


def test_a_user_in_no_mapped_group_is_refused_with_a_clear_page(client, provider):
    response = sign_in(client, "bob")
    assert response.status_code == 403
    assert "not in a group that may use ccadmin" in response.get_data(as_text=True)
    assert user("bob@example.com") is None and signed_in_as(client) is None
    refused = audit_events("login_failed")[-1]
    assert refused.after == {"email": "bob@example.com", "reason": "sso_unmapped_group"}


def test_a_wrong_state_is_refused(client, provider):
    callback = at_provider(client, "ann")
    parts = urlsplit(callback)
    query = parse_qs(parts.query)
    query["state"] = ["forged"]
    forged = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
    response = come_back(client, forged)
    assert response.status_code == 400
    assert "could not be verified" in response.get_data(as_text=True)
    assert user("ann@example.com") is None and signed_in_as(client) is None
    # The real answer cannot be used after a refused one either: the state is spent.
    assert come_back(client, callback).status_code == 400


def test_a_sign_in_the_provider_refused_says_so(client, provider):
    start = client.get("/login/sso").headers["Location"]
    state = parse_qs(urlsplit(start).query)["state"][0]
    query = urlencode({"error": "access_denied", "error_description": "<b>No</b>", "state": state})
    response = client.get(f"/login/sso/callback?{query}")
    page = response.get_data(as_text=True)
    assert response.status_code == 403 and "did not sign you in (&lt;b&gt;No&lt;/b&gt;)" in page
    assert audit_events("login_failed")[-1].after["reason"] == "sso_denied"
    assert signed_in_as(client) is None


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"nonce": "another-sign-in"}, id="wrong-nonce"),
        pytest.param({"exp": int(time.time()) - 600, "iat": int(time.time()) - 900}, id="expired"),
        pytest.param({"aud": "another-client"}, id="another-audience"),
        pytest.param({"iss": "https://idp.example.com"}, id="another-issuer"),
    ],
)
def test_an_id_token_not_for_this_sign_in_is_refused(client, provider, overrides):
    provider.id_token_overrides.update(overrides)
    response = sign_in(client, "ann")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert user("ann@example.com") is None and signed_in_as(client) is None
    assert audit_events("login_failed")[-1].after["reason"] == "sso_invalid"


def test_a_token_signed_by_another_key_is_refused(client, provider):
    provider.sign_with_foreign_key()
    response = sign_in(client, "ann")
    assert response.status_code == 400
    assert user("ann@example.com") is None and signed_in_as(client) is None


def test_a_key_rotation_at_the_provider_is_followed(client, provider):
    sign_in(client, "ann")
    assert provider.jwks_requests == 1
    client.post("/logout", data={"csrf_token": _csrf(client)})
    provider.rotate_keys()
    assert sign_in(client, "ann").status_code == 302
    assert signed_in_as(client) == "ann@example.com"
    assert provider.jwks_requests == 2  # the cached keys lacked the new one: fetched again
    sign_in(client, "ann")
    assert provider.jwks_requests == 2  # and kept


def test_a_deactivated_user_is_refused_and_their_sessions_end(client, provider, make_user):
    sign_in(client, "ann")
    ann = user("ann@example.com")
    ann.active = False
    db.session.commit()
    sessions.end_all(ann.id)
    assert signed_in_as(client) is None
    response = sign_in(client, "ann")
    assert response.status_code == 403 and "deactivated" in response.get_data(as_text=True)


def test_the_first_sign_in_links_the_password_user_with_that_email(client, provider, make_user):
    make_user("ann@example.com", role="viewer")
    sign_in(client, "ann")
    ann = user("ann@example.com")
    assert (ann.sso_subject is not None, ann.role, ann.has_password) == (True, "editor", True)
    assert len(db.session.scalars(select(AdminUser)).all()) == 1


def test_sso_only_turns_password_login_off_but_for_the_break_glass_admin(
    app, client, provider, make_user
):
    make_user("ops@example.com", role="admin")
    make_user("editor@example.com", role="editor")
    configure(app, provider, sso_only=True, break_glass_email="ops@example.com")
    page = client.get("/login").get_data(as_text=True)
    assert "Sign in with Test IdP" in page and "Break-glass admin login" in page
    refused = login(client, "editor@example.com", PASSWORD)
    assert refused.status_code == 403 and "Password login is off" in refused.get_data(as_text=True)
    assert audit_events("login_failed")[-1].after["reason"] == "sso_only"
    assert login(client, "ops@example.com", PASSWORD).status_code == 302
    assert signed_in_as(client) == "ops@example.com"
    assert audit_events("break_glass_login")[-1].actor == "ops@example.com"


def test_without_a_provider_there_is_no_single_sign_on(app, client):
    assert client.get("/login/sso").status_code == 404
    assert client.get("/login/sso/callback?code=x&state=y").status_code == 404
    assert "Sign in with" not in client.get("/login").get_data(as_text=True)


def test_an_unreachable_provider_gets_a_clear_page(app, client, oidc_provider):  # noqa: F811
    configure(app, oidc_provider)
    oidc_provider.stop()
    response = client.get("/login/sso")
    assert response.status_code == 502
    assert "cannot be reached" in response.get_data(as_text=True)


BASE = {"SECRET_KEY": "x" * 32}
ISSUER = {**BASE, "CCADMIN_OIDC_ISSUER": "https://idp.example.com/"}


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({**ISSUER}, "CCADMIN_OIDC_CLIENT_ID"),
        ({**ISSUER, "CCADMIN_OIDC_CLIENT_ID": "c"}, "CCADMIN_OIDC_CLIENT_SECRET"),
        (
            {**ISSUER, "CCADMIN_OIDC_CLIENT_ID": "c", "CCADMIN_OIDC_CLIENT_SECRET": "s"},
            "at least one of",
        ),
        ({**BASE, "CCADMIN_OIDC_ISSUER": "http://idp.example.com"}, "https://"),
        ({**BASE, "CCADMIN_SSO_ONLY": "1"}, "CCADMIN_SSO_ONLY needs CCADMIN_OIDC_ISSUER"),
        (
            {
                **ISSUER,
                "CCADMIN_OIDC_CLIENT_ID": "c",
                "CCADMIN_OIDC_CLIENT_SECRET": "s",
                "CCADMIN_OIDC_VIEWER_GROUPS": "all",
                "CCADMIN_SSO_ONLY": "1",
            },
            "CCADMIN_BREAK_GLASS_EMAIL",
        ),
    ],
)
def test_settings_that_cannot_sign_anyone_in_fail_at_start_up(environ, message):
    with pytest.raises(ConfigError, match=message):
        load(environ)


def test_a_complete_configuration_loads():
    settings = load(
        {
            **ISSUER,
            "CCADMIN_OIDC_CLIENT_ID": "c",
            "CCADMIN_OIDC_CLIENT_SECRET": "s",
            "CCADMIN_OIDC_EDITOR_GROUPS": "marketing, crm",
            "CCADMIN_SSO_ONLY": "yes",
            "CCADMIN_BREAK_GLASS_EMAIL": " Ops@Example.com ",
        }
    )
    assert settings.oidc_issuer == "https://idp.example.com"
    assert settings.oidc_editor_groups == ("marketing", "crm")
    assert settings.break_glass_email == "ops@example.com"
