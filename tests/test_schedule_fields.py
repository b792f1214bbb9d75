"""A scheduled change sets and clears only the fields it names, merged at run time with the
entry as it is then; a refused form comes back with everything typed."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from common.publishing_support import make_campaign, save_fields
from common.support import csrf_token, login
from sqlalchemy import select

from ccadmin.extensions import db
from ccadmin.imports import scheduling
from ccadmin.models import ContentEntry, ScheduledChange

SCHEMA = [
    {"name": "message", "max_length": 140},
    {"name": "image_url", "max_length": 300},
    {"name": "cta", "max_length": 20},
]
FULL = {"message": "Hello", "image_url": "https://img.example.com/a.png", "cta": "Shop now"}


@pytest.fixture
def campaign(app):
    campaign = make_campaign("spring", field_schema=SCHEMA)
    save_fields(campaign, "42", FULL)
    return campaign


@pytest.fixture
def editor(client, make_user, campaign):
    make_user("ed@example.com", role="editor")
    login(client, "ed@example.com")
    return client


def tools(campaign) -> str:
    return f"/admin/campaign-tools/{campaign.id}/"


def later(seconds: int = 600) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")


def post_schedule(client, campaign, **form: str):
    data = {"user_id": "42", "run_at": later(), "action": "schedule", **form}
    data["csrf_token"] = csrf_token(client, tools(campaign))
    return client.post(f"{tools(campaign)}schedule", data=data)


def fields_of(user_id: str) -> dict[str, str]:
    db.session.expire_all()
    entry = db.session.scalars(select(ContentEntry).where(ContentEntry.user_id == user_id)).one()
    return entry.fields


def the_change() -> ScheduledChange:
    db.session.expire_all()
    return db.session.scalars(select(ScheduledChange)).one()


def textarea(page: str, name: str) -> str:
    """The text a textarea shows (the browser drops the newline after the opening tag)."""
    match = re.search(rf'<textarea name="field_{name}"[^>]*>\n?(.*?)</textarea>', page, re.S)
    assert match, f"no textarea for {name}"
    return unescape(match.group(1))


def test_a_change_naming_one_field_keeps_the_others(editor, campaign):
    response = post_schedule(editor, campaign, field_message="Only the message")
    assert response.status_code == 302
    change = the_change()
    assert (change.fields, change.clear_fields) == ({"message": "Only the message"}, [])
    # Edited between scheduling and running: the edit is kept too.
    save_fields(campaign, "42", {**FULL, "cta": "Buy today"})
    result = scheduling.apply_scheduled_change(change.id)
    assert result["version"] == 3
    assert fields_of("42") == {
        "message": "Only the message",
        "image_url": FULL["image_url"],
        "cta": "Buy today",
    }
    assert the_change().status == "done"


def test_a_field_is_cleared_only_when_its_box_is_ticked(editor, campaign):
    assert post_schedule(editor, campaign, field_cta="", clear_image_url="1").status_code == 302
    change = the_change()
    assert (change.fields, change.clear_fields) == ({}, ["image_url"])
    scheduling.apply_scheduled_change(change.id)
    assert fields_of("42") == {"message": "Hello", "cta": "Shop now"}


def test_the_message_cannot_be_cleared_nor_an_empty_change_scheduled(editor, campaign):
    page = post_schedule(editor, campaign, clear_message="1").get_data(as_text=True)
    assert "it cannot be cleared" in page
    page = post_schedule(editor, campaign).get_data(as_text=True)
    assert "Nothing to change" in page
    page = post_schedule(editor, campaign, field_cta="Go", clear_cta="1").get_data(as_text=True)
    assert "choose one" in page
    assert db.session.scalars(select(ScheduledChange)).first() is None


def test_a_new_user_needs_a_message(editor, campaign):
    page = post_schedule(editor, campaign, user_id="7", field_cta="Go").get_data(as_text=True)
    assert "A message is required." in page
    assert db.session.scalars(select(ScheduledChange)).first() is None


def test_load_fills_the_form_and_untouched_loaded_values_are_not_part_of_the_change(
    editor, campaign
):
    typed_time = later()
    page = editor.post(
        f"{tools(campaign)}schedule",
        data={
            "user_id": "42",
            "run_at": typed_time,
            "action": "load",
            "csrf_token": csrf_token(editor, tools(campaign)),
        },
    ).get_data(as_text=True)
    assert textarea(page, "message") == "Hello"
    assert textarea(page, "cta") == "Shop now"
    assert 'value="42"' in page and f'value="{typed_time}"' in page
    loaded = dict(re.findall(r'<input type="hidden" name="(loaded_\w+)" value="([^"]*)"', page))
    assert unescape(loaded["loaded_image_url"]) == FULL["image_url"]

    # The user edits the message only; the other fields are submitted as loaded.
    form = {**{f"field_{name}": value for name, value in FULL.items()}, "loaded": "1"}
    form.update({f"loaded_{name}": value for name, value in FULL.items()})
    form["field_message"] = "New message"
    assert post_schedule(editor, campaign, **form).status_code == 302
    assert the_change().fields == {"message": "New message"}
    save_fields(campaign, "42", {**FULL, "image_url": "https://img.example.com/b.png"})
    scheduling.apply_scheduled_change(the_change().id)
    assert fields_of("42")["image_url"] == "https://img.example.com/b.png"


def test_a_refused_form_keeps_everything_typed(editor, campaign):
    past = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")
    response = post_schedule(
        editor, campaign, run_at=past, field_message="Typed <b>text</b>", clear_image_url="1"
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "The time is in the past" in page
    assert textarea(page, "message") == "Typed <b>text</b>"
    assert "Typed &lt;b&gt;text&lt;/b&gt;" in page  # escaped, never rendered as markup
    assert 'id="schedule-clear-image_url" value="1" checked' in page
    assert f'value="{past}"' in page


def test_an_over_long_value_is_refused_whole_with_the_lengths(editor, campaign):
    pasted = "y" * 160
    page = post_schedule(editor, campaign, field_message=pasted).get_data(as_text=True)
    assert "message: Too long: 160 characters, at most 140." in page
    assert textarea(page, "message") == pasted
    assert db.session.scalars(select(ScheduledChange)).first() is None


def test_the_list_shows_what_will_change(editor, campaign):
    post_schedule(editor, campaign, field_message="Later", clear_cta="1")
    page = editor.get(tools(campaign)).get_data(as_text=True)
    row = page[page.index('class="scheduled-change"') :]
    row = row[: row.index("</tr>")]
    assert "<strong>message</strong>:" in row
    assert "<del>Hello</del> &rarr; <ins>Later</ins>" in row
    assert '<del>Shop now</del> <em class="cleared">cleared</em>' in row
    assert "image_url" not in row


def test_a_change_that_no_longer_fits_fails_and_changes_nothing(editor, campaign):
    post_schedule(editor, campaign, field_cta="Fine")
    # The schema shrinks before the change runs.
    campaign.field_schema = [*SCHEMA[:2], {"name": "cta", "max_length": 3}]
    db.session.commit()
    result = scheduling.apply_scheduled_change(the_change().id)
    assert "Too long" in result["failed"]
    assert the_change().status == "failed"
    assert fields_of("42") == FULL
    page = editor.get(tools(campaign)).get_data(as_text=True)
    assert 'class="failed-change' in page and "not applied (cta: Too long" in page
