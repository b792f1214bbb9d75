"""The Braze hand-off in headless Chromium: the snippet names every field and its copy
button puts exactly the snippet on the clipboard; so do the API key's and the preview's."""

from __future__ import annotations

import pytest
from common.browser_support import CHROMIUM, browser, fill, log_in, submit  # noqa: F401
from common.publishing_support import make_campaign, save_fields
from common.support import start_admin, wait_until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)"),
]

SCHEMA = [{"name": "message", "max_length": 140}, {"name": "image_url", "max_length": 400}]


def copied(driver, button_id: str, source_id: str) -> str:
    """Click a copy button; the clipboard's text afterwards."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, button_id).click()
    # The button says so once the clipboard has taken the text.
    wait_until(lambda: driver.find_element(By.ID, button_id).text == "Copied")
    return driver.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "navigator.clipboard.readText().then(done, function (e) { done('error: ' + e); });"
    )


def test_copy_buttons_copy_the_snippet_the_key_and_the_body(app, make_user, spawn, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    make_user("admin@example.com", role="admin")
    campaign = make_campaign("spring", field_schema=SCHEMA)
    save_fields(campaign, "42", {"message": "Hello", "image_url": "https://cdn.example.com/a.png"})
    web = start_admin(spawn)
    browser.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"], "origin": web},
    )
    log_in(browser, web, "admin@example.com")

    browser.get(f"{web}/admin/campaign-tools/{campaign.id}/?user_id=42")
    snippet = browser.find_element(By.ID, "braze-snippet").text
    assert "{{cc.message}}" in snippet and "{{cc.image_url}}" in snippet
    assert copied(browser, "copy-snippet", "braze-snippet") == snippet
    body = browser.find_element(By.ID, "preview-body").text
    assert body.startswith("{")
    assert copied(browser, "copy-preview", "preview-body") == body

    browser.get(f"{web}/admin/api_keys/new/")
    fill(browser, "name", "Braze production")
    submit(browser, browser.find_element(By.CSS_SELECTOR, 'input[type="submit"][value="Save"]'))
    secret = browser.find_element(By.ID, "api-key-secret").text
    assert secret.startswith("cc_")
    assert copied(browser, "copy-secret", "api-key-secret") == secret
