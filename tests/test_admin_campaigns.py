"""Campaign management through the admin: versions, outbox events, audit rows, rules."""

from __future__ import annotations

import pytest
from common.support import csrf_token, login
from sqlalchemy import select

from ccadmin.extensions import db
from ccadmin.models import AuditEvent, Campaign, ContentEntry, OutboxEvent
from ccadmin.models.outbox import KIND_CAMPAIGN

NEW = "/admin/campaigns/new/"


@pytest.fixture
def admin_client(client, make_user):
    make_user("admin@example.com", role="admin")
    login(client, "admin@example.com")
    return client


def campaign_form(**overrides) -> dict:
    form = {
        "slug": "spring",
        "name": "Spring sale",
        "field_schema_text": "message:140\nimage_url:300",
        "fallback_policy": "default",
        "default_fields_text": "message=Hello there",
        "max_age": "30",
        "active": "y",
    }
    form.update(overrides)
    return {name: value for name, value in form.items() if value is not None}


def post_form(client, url: str, form: dict):
    return client.post(url, data={**form, "csrf_token": csrf_token(client, url)})


def campaign_by_slug(slug: str) -> Campaign | None:
    db.session.expire_all()
    return db.session.scalars(select(Campaign).where(Campaign.slug == slug)).first()


def campaign_events(campaign_id: int) -> list[OutboxEvent]:
    return db.session.scalars(
        select(OutboxEvent).where(
            OutboxEvent.kind == KIND_CAMPAIGN, OutboxEvent.campaign_id == campaign_id
        )
    ).all()


def audit_rows(target_id: int) -> list[AuditEvent]:
    return db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.target_type == "campaign", AuditEvent.target_id == str(target_id))
        .order_by(AuditEvent.id)
    ).all()


def test_create_campaign(admin_client):
    response = post_form(admin_client, NEW, campaign_form())
    assert response.status_code == 302, response.get_data(as_text=True)

    campaign = campaign_by_slug("spring")
    assert campaign.version == 1
    assert campaign.field_schema == [
        {"name": "message", "max_length": 140},
        {"name": "image_url", "max_length": 300},
    ]
    assert campaign.default_fields == {"message": "Hello there"}
    assert campaign.max_age == 30
    assert campaign.active and not campaign.public and not campaign.is_default
    assert len(campaign_events(campaign.id)) == 1
    (audit,) = audit_rows(campaign.id)
    assert audit.action == "create"
    assert audit.actor == "admin@example.com"
    assert audit.before is None and audit.after["slug"] == "spring"


def test_edit_campaign_bumps_version_and_keeps_slug(admin_client):
    post_form(admin_client, NEW, campaign_form())
    campaign = campaign_by_slug("spring")
    edit_url = f"/admin/campaigns/edit/?id={campaign.id}"

    page = admin_client.get(edit_url).get_data(as_text=True)
    assert "message:140\nimage_url:300" in page
    assert "message=Hello there" in page

    response = post_form(
        admin_client,
        edit_url,
        campaign_form(slug="renamed", name="Spring sale 2", max_age="0", public="y"),
    )
    assert response.status_code == 302

    campaign = campaign_by_slug("spring")
    assert campaign is not None and campaign_by_slug("renamed") is None
    assert campaign.name == "Spring sale 2"
    assert campaign.version == 2
    assert campaign.public and campaign.max_age == 0
    assert len(campaign_events(campaign.id)) == 2
    update = audit_rows(campaign.id)[-1]
    assert update.action == "update"
    assert update.before["name"] == "Spring sale" and update.before["version"] == 1
    assert update.after["name"] == "Spring sale 2" and update.after["version"] == 2


def test_setting_default_moves_the_flag_in_one_transaction(admin_client):
    post_form(admin_client, NEW, campaign_form(slug="first", is_default="y"))
    first = campaign_by_slug("first")
    assert first.is_default

    post_form(admin_client, NEW, campaign_form(slug="second", is_default="y"))
    first, second = campaign_by_slug("first"), campaign_by_slug("second")
    assert second.is_default and not first.is_default
    assert first.version == 2
    assert len(campaign_events(first.id)) == 2
    assert len(campaign_events(second.id)) == 1
    assert audit_rows(first.id)[-1].after["is_default"] is False

    # And back again through an edit.
    post_form(admin_client, f"/admin/campaigns/edit/?id={first.id}", campaign_form(is_default="y"))
    first, second = campaign_by_slug("first"), campaign_by_slug("second")
    assert first.is_default and not second.is_default
    assert (first.version, second.version) == (3, 2)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"slug": "Bad Slug"}, "lower-case letters"),
        ({"field_schema_text": "message:140\nuser_id:20"}, "&#39;user_id&#39; is reserved"),
        ({"field_schema_text": "image_url:20"}, "field is required"),
        ({"default_fields_text": "message=" + "x" * 141}, "Too long: 141 characters"),
        ({"default_fields_text": "colour=red"}, "Not a field of this campaign"),
        ({"max_age": "86401"}, "Number must be between 0 and 86400"),
        ({"max_age": "-1"}, "Number must be between 0 and 86400"),
        ({"fallback_policy": "teapot"}, "Not a valid choice"),
        ({"name": ""}, "This field is required"),
    ],
)
def test_invalid_campaign_is_refused_with_a_message(admin_client, overrides, message):
    response = post_form(admin_client, NEW, campaign_form(**overrides))
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    assert db.session.scalars(select(Campaign)).all() == []
    assert db.session.scalars(select(OutboxEvent)).all() == []


def test_duplicate_slug_is_a_form_error(admin_client):
    post_form(admin_client, NEW, campaign_form())
    response = post_form(admin_client, NEW, campaign_form(name="Other"))
    assert response.status_code == 200
    assert "A campaign with slug &#39;spring&#39; already exists." in response.get_data(
        as_text=True
    )
    assert len(db.session.scalars(select(Campaign)).all()) == 1


def test_delete_empty_campaign(admin_client):
    post_form(admin_client, NEW, campaign_form())
    campaign_id = campaign_by_slug("spring").id
    # The list page carries the delete form's token; post it to the delete endpoint.
    token = csrf_token(admin_client, "/admin/campaigns/")
    response = admin_client.post(
        "/admin/campaigns/delete/", data={"id": str(campaign_id), "csrf_token": token}
    )
    assert response.status_code == 302
    assert campaign_by_slug("spring") is None
    assert len(campaign_events(campaign_id)) == 2
    assert audit_rows(campaign_id)[-1].action == "delete"


def test_delete_campaign_with_content_is_refused(admin_client):
    post_form(admin_client, NEW, campaign_form())
    campaign = campaign_by_slug("spring")
    db.session.add(
        ContentEntry(campaign_id=campaign.id, user_id="1", fields={"message": "x"}, deleted=True)
    )
    db.session.commit()
    token = csrf_token(admin_client, "/admin/campaigns/")
    response = admin_client.post(
        "/admin/campaigns/delete/",
        data={"id": str(campaign.id), "csrf_token": token},
        follow_redirects=True,
    )
    page = response.get_data(as_text=True)
    assert "cannot be deleted" in page and "Deactivate it instead" in page
    assert campaign_by_slug("spring") is not None
    assert len(campaign_events(campaign.id)) == 1


def test_list_and_details_show_campaigns_escaped(admin_client):
    post_form(admin_client, NEW, campaign_form(name="<script>alert(1)</script>"))
    page = admin_client.get("/admin/campaigns/").get_data(as_text=True)
    assert "spring" in page
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    campaign_id = campaign_by_slug("spring").id
    details = admin_client.get(f"/admin/campaigns/details/?id={campaign_id}")
    assert "image_url:300" in details.get_data(as_text=True)


def test_export_campaigns_as_csv(admin_client):
    post_form(admin_client, NEW, campaign_form())
    response = admin_client.get("/admin/campaigns/export/csv/")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert body.splitlines()[0].startswith("Slug,Name")
    assert "spring,Spring sale" in body


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"name": "Spring \ud800"}, "name", "Not valid Unicode text"),
        ({"default_fields_text": "message=Hi \udfff"}, "default_fields_text", "message: Not valid"),
        ({"default_fields_text": "mess\udc00age=Hi"}, "default_fields_text", "mess\\udc00age: Not"),
        ({"field_schema_text": "message:140\nimg\ud800:20"}, "field_schema_text", "Not valid"),
    ],
)
def test_campaign_form_refuses_unpaired_surrogates(app, overrides, field, message):
    # Browsers never post lone surrogates, so the form is given them directly.
    from werkzeug.datastructures import MultiDict

    from ccadmin.admin.campaigns import CampaignForm

    with app.test_request_context(method="POST"):
        form = CampaignForm(formdata=MultiDict(campaign_form(**overrides)), meta={"csrf": False})
        assert not form.validate()
        assert message in form[field].errors[0]
        form[field]().encode("utf-8")
        assert form.errors.keys() == {field}
