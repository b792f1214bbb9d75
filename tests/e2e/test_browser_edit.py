"""A marketer's path in headless Chromium: log in, create a campaign and an entry, edit it,
and see the edit served by the API (real waitress, worker and API processes)."""

from __future__ import annotations

import json
import urllib.request

import pytest
from common.browser_support import CHROMIUM, SCREENSHOT_DIR, browser, fill, save, submit  # noqa: F401
from common.support import PASSWORD, start_stack, wait_until
from sqlalchemy import select

from ccadmin.extensions import db
from ccadmin.models import Campaign, ContentEntry

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)"),
]


def api_message(api_base: str, campaign: str, user_id: str) -> str | None:
    """The message the API serves for a user, or None while it is not there yet."""
    request = urllib.request.Request(
        f"{api_base}/v1/{campaign}?user_id={user_id}", headers={"X-API-Key": "env-key-one"}
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return json.loads(response.read()).get("message")
    except OSError:
        return None


def test_log_in_create_and_edit_content(app, spawn, make_user, browser):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    make_user("marketer@example.com", role="editor")
    make_user("boss@example.com", role="admin")
    # Listed first in the entry form, so choosing ours below reloads the inputs.
    db.session.add(Campaign(slug="a-first", name="Another campaign"))
    db.session.commit()
    web, api = start_stack(spawn)

    # An admin creates the campaign.
    browser.get(f"{web}/admin/campaigns/new/")
    assert "/login" in browser.current_url
    fill(browser, "email", "boss@example.com")
    fill(browser, "password", PASSWORD)
    submit(browser, browser.find_element(By.ID, "login"))
    assert browser.current_url.endswith("/admin/campaigns/new/")
    fill(browser, "slug", "e2e")
    fill(browser, "name", "Browser campaign")
    fill(browser, "field_schema_text", "message:140\ncta:20")
    save(browser)
    assert "Record was successfully created." in browser.page_source
    submit(browser, browser.find_element(By.ID, "logout"))
    assert "/login" in browser.current_url

    # An editor adds an entry for user 42, then edits it.
    fill(browser, "email", "marketer@example.com")
    fill(browser, "password", PASSWORD)
    submit(browser, browser.find_element(By.ID, "login"))
    assert "marketer@example.com (editor)" in browser.find_element(By.ID, "current-user").text
    browser.get(f"{web}/admin/content/new/")
    assert not browser.find_elements(By.ID, "field_cta")
    Select(browser.find_element(By.ID, "campaign_id")).select_by_visible_text(
        "Browser campaign (e2e)"
    )
    # The page reloads with the campaign's inputs.
    wait_until(lambda: browser.find_elements(By.ID, "field_cta"))
    fill(browser, "user_id", "42")
    fill(browser, "field_message", "Hello from the browser")
    fill(browser, "field_cta", "Shop now")
    save(browser)
    assert "Record was successfully created." in browser.page_source
    assert "Hello from the browser" in browser.page_source

    submit(browser, browser.find_element(By.CSS_SELECTOR, 'a[title="Edit Record"]'))
    fill(browser, "field_message", "Edited in the browser")
    save(browser)
    assert "Record was successfully saved." in browser.page_source
    cells = {
        cell.get_attribute("class"): cell.text
        for cell in browser.find_elements(By.CSS_SELECTOR, "table.model-list td")
    }
    assert cells["col-user_id"] == "42"
    assert cells["col-message"] == "Edited in the browser"
    assert cells["col-version"] == "2"

    db.session.expire_all()
    campaign = db.session.scalars(select(Campaign).where(Campaign.slug == "e2e")).one()
    entry = db.session.scalars(select(ContentEntry)).one()
    assert entry.campaign_id == campaign.id
    assert entry.fields == {"message": "Edited in the browser", "cta": "Shop now"}
    assert (entry.version, entry.updated_by) == (2, "marketer@example.com")

    # The worker publishes it and the API serves the edit.
    assert wait_until(lambda: api_message(api, "e2e", "42") == "Edited in the browser", 20)

    # Once live, the list says so.
    def shown_live() -> bool:
        browser.get(f"{web}/admin/content/")
        return browser.find_element(By.CSS_SELECTOR, "td.col-status").text == "live"

    assert wait_until(shown_live, 10)
    assert browser.find_element(By.CSS_SELECTOR, "td.col-live_version").text == "2"
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT_DIR / "ccadmin-content-list.png"))
