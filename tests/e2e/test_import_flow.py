"""A marketer's import in headless Chromium: upload, watch the staging, preview, apply, watch
the progress bar reach 100%, and see the content served by the API (real waitress, worker and
API processes)."""

from __future__ import annotations

import json
import urllib.request

import pytest
from common.browser_support import CHROMIUM, SCREENSHOT_DIR, browser, fill, submit  # noqa: F401
from common.publishing_support import make_campaign
from common.support import PASSWORD, free_port, start_admin, wait_until

ROWS = 25_000  # three apply batches

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)"),
]


def api_message(api_base: str, user_id: str) -> str | None:
    request = urllib.request.Request(
        f"{api_base}/v1/spring?user_id={user_id}", headers={"X-API-Key": "env-key-one"}
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return json.loads(response.read()).get("message")
    except OSError:
        return None


def preview_counts(driver) -> dict[str, str] | None:
    """The preview's count table once the page shows it (it reloads itself after staging)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        cells = driver.find_elements(By.CSS_SELECTOR, "#import-counts td")
        return {cell.get_attribute("class"): cell.text for cell in cells} or None
    except StaleElementReferenceException:
        return None


def test_import_with_preview_and_progress_bar(app, spawn, make_user, browser, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    make_campaign("spring")
    make_user("marketer@example.com", role="editor")
    upload_file = tmp_path / "spring.csv"
    upload_file.write_text(
        "user_id,message\n"
        + "".join(f"{number},Hello number {number}\n" for number in range(1, ROWS + 1))
        + "bad,\n"
    )
    web = start_admin(spawn)
    api = f"http://127.0.0.1:{free_port()}"
    spawn(
        ["-m", "ccadmin.api"],
        env={"API_PORT": api.rsplit(":", 1)[1], "API_PROCESSES": "1"},
        ready_url=f"{api}/healthz",
    )

    browser.get(f"{web}/admin/imports/")
    fill(browser, "email", "marketer@example.com")
    fill(browser, "password", PASSWORD)
    submit(browser, browser.find_element(By.ID, "login"))
    assert browser.current_url.endswith("/admin/imports/")
    Select(browser.find_element(By.ID, "campaign_id")).select_by_visible_text("Spring (spring)")
    browser.find_element(By.ID, "file").send_keys(str(upload_file))
    submit(browser, browser.find_element(By.ID, "upload"))

    # The request only stored the file: the page waits for the worker to stage it.
    assert "Staging…" in browser.find_element(By.ID, "import-staging").text
    assert browser.find_element(By.ID, "import-status").text == "received"
    assert not browser.find_elements(By.ID, "apply-form")
    spawn(["-m", "workers"])

    # The preview, once staged (the page reloads itself): counts and the
    # invalid row, nothing applied yet.
    counts = wait_until(lambda: preview_counts(browser), 60, interval=0.2)
    assert counts["count-new"] == str(ROWS) and counts["count-invalid"] == "1"
    assert "A message is required." in browser.find_element(By.ID, "invalid-rows").text
    assert api_message(api, "1") == "Hello"  # the fallback
    # All-or-nothing is not possible with an invalid row; valid rows only is chosen.
    assert not browser.find_element(By.ID, "mode-all").is_enabled()
    assert browser.find_element(By.ID, "mode-valid").is_selected()
    submit(browser, browser.find_element(By.ID, "apply"))
    # Nothing is applied before the count is confirmed.
    question = browser.find_element(By.ID, "confirm-question").text
    assert f"changes {ROWS} entries of spring" in question
    submit(browser, browser.find_element(By.ID, "confirm-button"))

    # The progress bar fills while the worker applies and publishes, then the
    # page reloads with the final state.
    def finished() -> bool:
        bar = browser.find_elements(By.ID, "import-progress-bar")
        status = browser.find_elements(By.ID, "import-status")
        return bool(bar and status and bar[0].text == "100%" and status[0].text == "applied")

    wait_until(finished, 60, interval=0.2)
    wait_until(
        lambda: (
            browser.find_element(By.ID, "import-progress").get_attribute("data-running") == "false"
        ),
        60,
        interval=0.5,
    )
    bar = browser.find_element(By.ID, "import-progress-bar")
    assert bar.get_attribute("aria-valuenow") == "100"
    assert "3 of 3 batches live" in browser.find_element(By.ID, "import-progress-text").text
    assert api_message(api, "1") == "Hello number 1"
    assert api_message(api, str(ROWS)) == f"Hello number {ROWS}"
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT_DIR / "ccadmin-import-progress.png"))
