"""No form truncates what is typed: limits show as counters and are checked by the server."""

from __future__ import annotations

import pytest
from common.publishing_support import make_campaign
from common.support import csrf_token, login

from ccadmin.extensions import db
from ccadmin.models import AdminUser

PAGES = (
    "/admin/",
    "/admin/content/new/",
    "/admin/campaigns/new/",
    "/admin/users/new/",
    "/admin/api_keys/new/",
    "/admin/imports/",
    "/admin/campaign-tools/{campaign}/",
    "/admin/campaigns/details/?id={campaign}",
)


@pytest.fixture
def admin(client, make_user):
    make_user("boss@example.com", role="admin")
    return client


def test_the_login_page_uses_no_maxlength(admin):
    assert "maxlength" not in admin.get("/login").get_data(as_text=True).lower()


@pytest.mark.parametrize("url", PAGES)
def test_no_admin_page_uses_maxlength(admin, url):
    campaign = make_campaign("spring")
    login(admin, "boss@example.com")
    response = admin.get(url.format(campaign=campaign.id))
    assert response.status_code == 200
    assert "maxlength" not in response.get_data(as_text=True).lower()


def test_a_limited_input_carries_its_limit_for_the_counter(admin):
    login(admin, "boss@example.com")
    page = admin.get("/admin/users/new/").get_data(as_text=True)
    assert 'data-max-length="254"' in page


def test_an_over_long_value_is_refused_with_its_length_not_cut(admin):
    login(admin, "boss@example.com")
    url = "/admin/users/new/"
    email = "a" * 250 + "@example.com"
    response = admin.post(
        url,
        data={
            "email": email,
            "role": "viewer",
            "password": "a long enough password",
            "csrf_token": csrf_token(admin, url),
        },
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Field cannot be longer than 254 characters." in page
    assert email in page
    assert db.session.query(AdminUser).filter_by(email=email).first() is None
