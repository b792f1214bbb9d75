"""Campaign names and content fields are shown as text on every page, never run as markup."""

from __future__ import annotations

import pytest
from common.security_support import fresh_browser
from common.support import csrf_token, login

from ccadmin.extensions import db
from ccadmin.models import Campaign, ContentEntry

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
ATTRIBUTE = '"><img src=x onerror=alert(2)>'


@pytest.fixture
def hostile(app, make_user):
    """A campaign and an entry created through the admin with markup in every text field."""
    make_user("boss@example.com", role="admin")
    client = fresh_browser(app)
    login(client, "boss@example.com")
    token = csrf_token(client, "/admin/campaigns/new/")
    response = client.post(
        "/admin/campaigns/new/",
        data={
            "csrf_token": token,
            "slug": "evil",
            "name": SCRIPT + ATTRIBUTE,
            "field_schema_text": "message:140\ncta:60",
            "fallback_policy": "default",
            "default_fields_text": f"message={SCRIPT}",
            "max_age": "60",
            "active": "y",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    campaign = db.session.scalars(db.select(Campaign)).one()
    url = f"/admin/content/new/?campaign_id={campaign.id}"
    response = client.post(
        url,
        data={
            "csrf_token": csrf_token(client, url),
            "campaign_id": str(campaign.id),
            "user_id": "u1",
            "field_message": SCRIPT,
            "field_cta": ATTRIBUTE,
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    entry = db.session.scalars(db.select(ContentEntry)).one()
    # Then edited, so the audit log holds the markup before and after.
    url = f"/admin/content/edit/?id={entry.id}"
    client.post(
        url,
        data={
            "csrf_token": csrf_token(client, url),
            "field_message": SCRIPT + "!",
            "field_cta": ATTRIBUTE,
        },
    )
    return client, campaign, entry


def test_markup_is_escaped_on_every_page(hostile):
    client, campaign, entry = hostile
    from ccadmin.models import AuditEvent

    audit_id = db.session.scalars(
        db.select(AuditEvent.id).where(AuditEvent.target_type == "content_entry")
    ).first()
    pages = [
        "/admin/campaigns/",
        f"/admin/campaigns/details/?id={campaign.id}",
        f"/admin/campaigns/edit/?id={campaign.id}",
        "/admin/content/",
        f"/admin/content/?search=u1&flt1_0={campaign.id}",
        f"/admin/content/details/?id={entry.id}",
        f"/admin/content/edit/?id={entry.id}",
        f"/admin/content/new/?campaign_id={campaign.id}",
        "/admin/audit/",
        f"/admin/audit/details/?id={audit_id}",
        f"/admin/campaign-tools/{campaign.id}/",
        "/admin/imports/",
        "/admin/metrics/",
    ]
    shown = 0
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        page = response.get_data(as_text=True)
        assert SCRIPT not in page, url
        assert "<img src=x" not in page, url
        shown += ESCAPED in page
    # The values are on the pages, escaped (not merely missing).
    assert shown >= 8


def test_dashboard_json_carries_data_not_markup(hostile):
    client, campaign, entry = hostile
    # The campaign filter is echoed back: as a JSON string, never as a page.
    response = client.get("/admin/metrics/data", query_string={"range": "5m", "campaign": SCRIPT})
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.get_json()["campaign"] == SCRIPT
    # Labels are campaign slugs, which cannot hold markup; the page sets them as text.
    assert set(response.get_json()["campaign_options"]) <= {campaign.slug}
