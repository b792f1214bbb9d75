"""Four-eyes approval in headless Chromium: an editor's edit waits as a change request, a
second editor approves it (after a refresh when the entry moved), and the API serves it."""

from __future__ import annotations

from common.browser_support import BROWSER_MARKS, browser, fill, log_in, save, submit  # noqa: F401
from common.publishing_support import make_campaign, save_fields
from common.support import start_stack, wait_until
from e2e.test_browser_edit import api_message
from selenium.webdriver.common.by import By

pytestmark = BROWSER_MARKS

SCHEMA = [{"name": "message", "max_length": 140}]


def edit_entry(driver, web: str, message: str) -> None:
    driver.get(f"{web}/admin/content/")
    submit(driver, driver.find_element(By.CSS_SELECTOR, 'a[title="Edit Record"]'))
    fill(driver, "field_message", message)
    save(driver)


def switch_user(driver, web: str, email: str) -> None:
    submit(driver, driver.find_element(By.ID, "logout"))
    log_in(driver, web, email)


def test_edit_request_refresh_and_approve(app, spawn, make_user, browser):  # noqa: F811
    make_user("ann@example.com", role="editor")
    make_user("bob@example.com", role="editor")
    campaign = make_campaign("spring", field_schema=SCHEMA, changes_need_approval=True)
    save_fields(campaign, "42", {"message": "Hello"})
    web, api = start_stack(spawn)
    assert wait_until(lambda: api_message(api, "spring", "42") == "Hello", 20)

    # Ann's edit becomes request #1; nothing goes live.
    log_in(browser, web, "ann@example.com")
    edit_entry(browser, web, "Hello from Ann")
    assert browser.current_url.endswith("/admin/change-requests/details/?id=1")
    assert "change request #1 is open" in browser.page_source
    assert browser.find_element(By.CSS_SELECTOR, "#request-diff ins").text == "Hello from Ann"
    assert not browser.find_elements(By.ID, "approve")
    assert api_message(api, "spring", "42") == "Hello"

    # Bob sees it waiting, in the menu and the list, and approves it.
    switch_user(browser, web, "bob@example.com")
    assert browser.find_element(By.ID, "review-badge").text == "1"
    submit(browser, browser.find_element(By.PARTIAL_LINK_TEXT, "Change requests"))
    submit(browser, browser.find_element(By.CSS_SELECTOR, 'a[title="View Record"]'))
    assert browser.find_element(By.ID, "request-author").text == "ann@example.com"
    submit(browser, browser.find_element(By.ID, "approve"))
    assert browser.find_element(By.ID, "request-status").text == "applied"
    assert wait_until(lambda: api_message(api, "spring", "42") == "Hello from Ann", 20)
    assert not browser.find_elements(By.ID, "review-badge")

    # Bob's own edit waits for Ann; the entry moves before she decides.
    edit_entry(browser, web, "Hello from Bob")
    save_fields(campaign, "42", {"message": "Changed meanwhile"})
    switch_user(browser, web, "ann@example.com")
    browser.get(f"{web}/admin/change-requests/details/?id=2")
    assert "users 42" in browser.find_element(By.ID, "request-conflict").text
    assert not browser.find_element(By.ID, "approve").is_enabled()
    submit(browser, browser.find_element(By.ID, "refresh"))
    assert not browser.find_elements(By.ID, "request-conflict")
    assert browser.find_element(By.CSS_SELECTOR, "#request-diff del").text == "Changed meanwhile"
    submit(browser, browser.find_element(By.ID, "approve"))
    assert browser.find_element(By.ID, "request-status").text == "applied"
    assert wait_until(lambda: api_message(api, "spring", "42") == "Hello from Bob", 20)
