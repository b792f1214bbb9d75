"""Nothing typed is lost, in headless Chromium: scheduled changes keep the fields they do not
name, a refused schedule form keeps its input, the entry form keeps the user id when the
campaign changes, and a rollback asks first and can be undone (real waitress and worker)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from common.browser_support import CHROMIUM, browser, fill, log_in, submit  # noqa: F401
from common.import_support import entries, upload_and_stage
from common.publishing_support import make_campaign
from common.support import login, start_admin, wait_until
from sqlalchemy import select

from ccadmin import publishing
from ccadmin.extensions import db
from ccadmin.imports import applying
from ccadmin.models import Campaign, ContentEntry, ContentImport

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)"),
]
SCHEMA = [
    {"name": "message", "max_length": 140},
    {"name": "image_url", "max_length": 300},
    {"name": "cta", "max_length": 20},
]
FULL = {"message": "Hello", "image_url": "https://img.example.com/a.png", "cta": "Shop now"}
EDITOR = "marketer@example.com"


@pytest.fixture
def campaign(app, make_user):
    make_user(EDITOR, role="editor")
    campaign = make_campaign("spring", field_schema=SCHEMA)
    entry = ContentEntry(campaign_id=campaign.id, user_id="42", fields=dict(FULL))
    publishing.record_content_change(entry, EDITOR, "create", None)
    db.session.commit()
    return campaign


def set_time(driver, element_id: str, moment: datetime) -> None:
    """Fill a datetime-local input (typing into one depends on the browser's locale)."""
    from selenium.webdriver.common.by import By

    value = moment.strftime("%Y-%m-%dT%H:%M:%S")
    driver.execute_script(
        "arguments[0].value = arguments[1];", driver.find_element(By.ID, element_id), value
    )


def fields_of(user_id: str) -> dict[str, str]:
    db.session.expire_all()
    entry = db.session.scalars(select(ContentEntry).where(ContentEntry.user_id == user_id)).one()
    return entry.fields


def test_a_scheduled_message_change_keeps_the_other_fields(campaign, spawn, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    web = start_admin(spawn)
    spawn(["-m", "workers"])
    log_in(browser, web, EDITOR)
    browser.get(f"{web}/admin/campaign-tools/{campaign.id}/")
    fill(browser, "schedule-user", "42")
    submit(browser, browser.find_element(By.ID, "schedule-load"))
    assert browser.find_element(By.ID, "schedule-user").get_attribute("value") == "42"
    assert browser.find_element(By.ID, "schedule-cta").get_attribute("value") == "Shop now"
    fill(browser, "schedule-message", "Only the message")
    assert browser.find_element(By.ID, "schedule-message-counter").text == "16 / 140"
    set_time(browser, "schedule-run-at", datetime.now(UTC) + timedelta(seconds=3))
    submit(browser, browser.find_element(By.ID, "schedule-button"))
    diff = browser.find_element(By.CSS_SELECTOR, ".scheduled-change .change-diff").text
    assert "message: Hello → Only the message" in diff
    assert "cta" not in diff and "image_url" not in diff

    wait_until(lambda: fields_of("42")["message"] == "Only the message", 30)
    assert fields_of("42") == {**FULL, "message": "Only the message"}


def test_a_refused_schedule_keeps_everything_typed(campaign, spawn, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    web = start_admin(spawn)
    log_in(browser, web, EDITOR)
    browser.get(f"{web}/admin/campaign-tools/{campaign.id}/")
    fill(browser, "schedule-user", "42")
    pasted = "z" * 160
    fill(browser, "schedule-message", pasted)
    # Nothing cuts the paste; the counter says it is too long.
    assert browser.find_element(By.ID, "schedule-message").get_attribute("value") == pasted
    counter = browser.find_element(By.ID, "schedule-message-counter")
    assert counter.text == "160 / 140 (20 too many)"
    assert "text-danger" in counter.get_attribute("class")
    fill(browser, "schedule-cta", "Go")
    browser.find_element(By.ID, "schedule-clear-image_url").click()
    set_time(browser, "schedule-run-at", datetime.now(UTC) + timedelta(hours=1))
    submit(browser, browser.find_element(By.ID, "schedule-button"))

    errors = browser.find_element(By.ID, "schedule-errors").text
    assert "message: Too long: 160 characters, at most 140." in errors
    assert browser.find_element(By.ID, "schedule-user").get_attribute("value") == "42"
    assert browser.find_element(By.ID, "schedule-message").get_attribute("value") == pasted
    assert browser.find_element(By.ID, "schedule-cta").get_attribute("value") == "Go"
    assert browser.find_element(By.ID, "schedule-clear-image_url").is_selected()
    assert browser.find_element(By.ID, "schedule-run-at").get_attribute("value")

    # A time in the past: refused too, with the input still there.
    fill(browser, "schedule-message", "Short enough")
    set_time(browser, "schedule-run-at", datetime.now(UTC) - timedelta(hours=1))
    submit(browser, browser.find_element(By.ID, "schedule-button"))
    assert "The time is in the past" in browser.find_element(By.ID, "schedule-errors").text
    assert browser.find_element(By.ID, "schedule-message").get_attribute("value") == "Short enough"
    assert browser.find_element(By.ID, "schedule-cta").get_attribute("value") == "Go"
    assert fields_of("42") == FULL


def test_changing_campaign_keeps_the_typed_user_id(campaign, spawn, browser):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    db.session.add(Campaign(slug="autumn", name="Autumn", field_schema=SCHEMA[:1]))
    db.session.commit()
    web = start_admin(spawn)
    log_in(browser, web, EDITOR)
    browser.get(f"{web}/admin/content/new/?campaign_id={campaign.id}")
    fill(browser, "user_id", "777")
    fill(browser, "field_message", "Typed before switching")
    fill(browser, "field_cta", "Go")
    page = browser.find_element(By.TAG_NAME, "html")
    Select(browser.find_element(By.ID, "campaign_id")).select_by_visible_text("Autumn (autumn)")
    wait_until(lambda: not browser.find_elements(By.ID, "field_cta"))
    assert page.id != browser.find_element(By.TAG_NAME, "html").id
    assert browser.find_element(By.ID, "user_id").get_attribute("value") == "777"
    assert browser.find_element(By.ID, "field_message").get_attribute("value") == (
        "Typed before switching"
    )
    assert "Record was successfully created." not in browser.page_source
    assert (
        db.session.scalars(select(ContentEntry).where(ContentEntry.user_id == "777")).first()
        is None
    )


def test_a_rollback_asks_first_and_can_be_rolled_forward(
    campaign,
    client,
    spawn,
    browser,  # noqa: F811
):
    from selenium.webdriver.common.by import By

    login(client, EDITOR)
    content = b"user_id,message\n42,Imported\n" + b"".join(
        f"{n},Imported {n}\n".encode() for n in range(100, 130)
    )
    content_import = upload_and_stage(client, campaign.id, "a.csv", content)
    content_import.status, content_import.applied_by = "queued", EDITOR
    db.session.commit()
    applying.apply_change_set(content_import.id)
    web = start_admin(spawn)
    spawn(["-m", "workers"])
    log_in(browser, web, EDITOR)

    browser.get(f"{web}/admin/imports/{content_import.id}/")
    submit(browser, browser.find_element(By.ID, "rollback"))
    question = browser.find_element(By.ID, "confirm-question").text
    assert "This restores 31 entries of spring" in question
    # Cancelling changes nothing.
    submit(browser, browser.find_element(By.ID, "confirm-cancel"))
    assert entries(campaign.id)["42"].fields["message"] == "Imported"
    submit(browser, browser.find_element(By.ID, "rollback"))
    submit(browser, browser.find_element(By.ID, "confirm-button"))
    wait_until(lambda: browser.find_element(By.ID, "import-status").text == "applied", 30)
    assert entries(campaign.id)["42"].fields == FULL
    assert entries(campaign.id)["100"].deleted

    submit(browser, browser.find_element(By.ID, "rollback"))
    assert "Roll forward rollback" in browser.find_element(By.TAG_NAME, "h1").text
    submit(browser, browser.find_element(By.ID, "confirm-button"))
    wait_until(lambda: browser.find_element(By.ID, "import-status").text == "applied", 30)
    stored = entries(campaign.id)
    assert stored["42"].fields == {**FULL, "message": "Imported"}
    assert stored["100"].fields == {"message": "Imported 100"} and not stored["100"].deleted
    db.session.expire_all()
    kinds = [
        item.kind for item in db.session.scalars(select(ContentImport).order_by(ContentImport.id))
    ]
    assert kinds == ["import", "rollback", "roll_forward"]
