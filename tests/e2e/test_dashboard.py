"""The live metrics page in headless Chromium: plots render, and traffic shows up live
(real waitress web process, real API process, real Redis)."""

from __future__ import annotations

from common import api_support, browser_support
from common.api_support import ENV_KEY, call, mark_ready, publish_campaign, publish_entry
from common.browser_support import BROWSER_MARKS, SCREENSHOT_DIR, fill, submit
from common.support import PASSWORD, start_admin, wait_until

start_api = api_support.start_api
browser = browser_support.browser
pytestmark = BROWSER_MARKS

AUTH = {"X-API-Key": ENV_KEY}


def test_dashboard_draws_and_counts_live(app, spawn, make_user, redis_client, start_api, browser):
    from selenium.webdriver.common.by import By

    make_user("watcher@example.com", role="viewer")
    publish_campaign(redis_client, "promo", default_fields={"message": "Hi"}, serve_at_data=True)
    publish_entry(redis_client, "promo", "1", 1, {"message": "Hello"})
    mark_ready(redis_client)
    api_port = start_api()
    web = start_admin(spawn)

    browser.get(f"{web}/admin/metrics/")
    assert "/login" in browser.current_url
    fill(browser, "email", "watcher@example.com")
    fill(browser, "password", PASSWORD)
    submit(browser, browser.find_element(By.ID, "login"))
    assert browser.current_url.endswith("/admin/metrics/")

    # plotly.js (served by us) has drawn the figures as SVG.
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#fig-requests svg.main-svg"))
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#fig-latency svg.main-svg"))
    wait_until(lambda: browser.find_element(By.ID, "card-requests").text == "0")
    assert browser.find_element(By.ID, "meter-state").text == "green"
    # Empty tables say so in words.
    assert browser.find_element(By.ID, "failed-jobs").text.endswith("No failed jobs.")

    for user_id in ("1", "2") * 10 + ("1",) * 5:
        assert call(api_port, f"/data?user_id={user_id}", headers=AUTH).status == 200
    # The page refreshes by itself: no reload, the count rises to what was sent.
    page = browser.find_element(By.TAG_NAME, "html")
    wait_until(lambda: browser.find_element(By.ID, "card-requests").text == "25", timeout=15)
    assert page.is_displayed()  # the same document: it was not reloaded
    plotted = browser.execute_script(
        "var fig = document.getElementById('fig-requests');"
        "return fig.data.reduce(function (sum, trace) {"
        "  return sum + trace.y.reduce(function (a, b) { return a + b; }, 0); }, 0);"
    )
    assert plotted == 25
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT_DIR / "ccadmin-dashboard.png"))
