"""The admin's home: what needs attention, the campaigns, the latest changes."""

from __future__ import annotations

from common.import_support import upload_and_stage
from common.publishing_support import make_campaign, save_entry
from common.support import login

from ccadmin.extensions import db
from ccadmin.models import OutboxEvent

SCHEMA = [{"name": "message", "max_length": 140}]


def test_home_lists_what_waits_the_campaigns_and_the_latest_changes(app, client, make_user):
    make_user("ed@example.com", role="editor")
    campaign = make_campaign("spring", field_schema=SCHEMA)
    save_entry(campaign, "42", "Hello")
    for event in db.session.query(OutboxEvent):
        event.published_at = event.created_at
    db.session.commit()
    login(client, "ed@example.com")

    home = client.get("/admin/").get_data(as_text=True)
    assert 'id="all-clear"' in home
    assert "<code>/v1/spring</code>" in home
    assert "user 42</a> in spring" in home

    staged = upload_and_stage(client, campaign.id, "a.csv", b"user_id,message\n7,New\n")
    home = client.get("/admin/").get_data(as_text=True)
    assert 'id="all-clear"' not in home
    assert f"Import #{staged.id}</a>\n      into spring:" in home
    assert "previewed, waiting to be applied (1 entry to change)" in home
    # Operator detail is on Live metrics, not here.
    assert 'id="reconcile-report"' not in home
