"""Signing in through the identity provider's own page in headless Chromium."""

from __future__ import annotations

from common.browser_support import BROWSER_MARKS, browser, fill, submit  # noqa: F401
from common.oidc_provider import oidc_provider  # noqa: F401
from common.support import start_admin
from selenium.webdriver.common.by import By
from sqlalchemy import select

from ccadmin.extensions import db
from ccadmin.models import AdminUser

pytestmark = BROWSER_MARKS


def test_sign_in_at_the_provider(app, spawn, browser, oidc_provider):  # noqa: F811
    """A marketer signs in at the provider's page and lands where they were going."""
    oidc_provider.add_user("ann", email="ann@example.com", groups=["marketing"])
    web = start_admin(
        spawn,
        {
            "CCADMIN_OIDC_ISSUER": oidc_provider.issuer,
            "CCADMIN_OIDC_CLIENT_ID": oidc_provider.client_id,
            "CCADMIN_OIDC_CLIENT_SECRET": oidc_provider.client_secret,
            "CCADMIN_OIDC_NAME": "Acme SSO",
            "CCADMIN_OIDC_EDITOR_GROUPS": "marketing",
        },
    )
    oidc_provider.redirect_uris.append(f"{web}/login/sso/callback")

    browser.get(f"{web}/admin/content/")
    assert "/login" in browser.current_url
    submit(browser, browser.find_element(By.ID, "sso-login"))
    assert browser.current_url.startswith(oidc_provider.issuer)
    fill(browser, "username", "ann")
    submit(browser, browser.find_element(By.ID, "sign-in"))
    assert browser.current_url == f"{web}/admin/content/"
    assert "ann@example.com (editor)" in browser.find_element(By.ID, "current-user").text
    db.session.expire_all()
    ann = db.session.scalars(select(AdminUser).where(AdminUser.email == "ann@example.com")).one()
    assert ann.sso_subject and not ann.has_password
