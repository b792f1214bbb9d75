"""The Content-Security-Policy in a real browser: the admin and the dashboard work under it,
with no violation reported while clicking through, and stored markup never runs."""

from __future__ import annotations

import shutil

import pytest
from common.support import PASSWORD, start_admin, wait_until

from ccadmin.extensions import db
from ccadmin.models import Campaign, ContentEntry

CHROMIUM = next(
    (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None
)
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCRIPT = "<script>alert(1)</script>"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)"),
]

# Runs before any page script (CDP scripts are not subject to the page's CSP)
# and keeps every violation the page reports.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', function (event) {
  window.__cspViolations.push(event.violatedDirective + ' ' + event.blockedURI + ' '
    + (event.sourceFile || '') + ':' + event.lineNumber);
});
"""


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_VIOLATIONS})
    driver.implicitly_wait(3)
    yield driver
    driver.quit()


class Violations:
    """Collects CSP reports from the page listener and the console, page by page."""

    def __init__(self, driver) -> None:
        self.driver = driver
        self.found: list[str] = []

    def collect(self, where: str) -> None:
        reported = self.driver.execute_script("return window.__cspViolations || []")
        self.found += [f"{where}: {item}" for item in reported]
        for entry in self.driver.get_log("browser"):
            message = entry["message"]
            if "Content Security Policy" in message or "Refused to" in message:
                self.found.append(f"{where}: {message}")


def test_admin_and_dashboard_work_under_the_policy(app, spawn, make_user, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    make_user("boss@example.com", role="admin")
    campaign = Campaign(slug="spring", name=SCRIPT, is_default=True)
    db.session.add(campaign)
    db.session.flush()
    entry = ContentEntry(campaign_id=campaign.id, user_id="42", fields={"message": SCRIPT})
    db.session.add(entry)
    db.session.commit()
    web = start_admin(spawn)
    violations = Violations(browser)

    browser.get(f"{web}/login")
    browser.find_element(By.ID, "email").send_keys("boss@example.com")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login").click()
    WebDriverWait(browser, 10).until(expected_conditions.url_contains("/admin/"))
    violations.collect("login")

    # The content list: menus, filters, bulk actions and the delete confirmation all run
    # from static files, not inline handlers.
    browser.get(f"{web}/admin/content/")
    browser.find_element(By.LINK_TEXT, "Add Filter").click()
    browser.find_element(By.CSS_SELECTOR, "a.filter").click()
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, ".filter-val, .filter-op"), 5)
    browser.find_element(By.CSS_SELECTOR, "a.nav-link.active").click()  # javascript:void(0)
    browser.find_element(By.LINK_TEXT, "With selected").click()
    browser.find_element(By.CSS_SELECTOR, "[data-model-action]").click()
    # Nothing selected: actions.js says so in an alert.
    WebDriverWait(browser, 5).until(expected_conditions.alert_is_present())
    browser.switch_to.alert.accept()
    browser.find_element(By.CSS_SELECTOR, "button[data-confirm]").click()
    WebDriverWait(browser, 5).until(expected_conditions.alert_is_present())
    assert "delete this record" in browser.switch_to.alert.text
    browser.switch_to.alert.dismiss()
    violations.collect("content list")
    db.session.expire_all()
    assert not db.session.get(ContentEntry, entry.id).deleted

    pages = [
        "/admin/",
        f"/admin/content/details/?id={entry.id}",
        f"/admin/content/edit/?id={entry.id}",
        f"/admin/content/new/?campaign_id={campaign.id}",
        "/admin/campaigns/",
        f"/admin/campaigns/details/?id={campaign.id}",
        f"/admin/campaigns/edit/?id={campaign.id}",
        "/admin/audit/",
        "/admin/users/",
        "/admin/users/new/",
        "/admin/api_keys/",
        "/admin/imports/",
        f"/admin/campaign-tools/{campaign.id}/",
    ]
    for url in pages:
        browser.get(web + url)
        # An alert would mean stored markup ran (Selenium raises on the next command).
        assert browser.find_element(By.TAG_NAME, "body")
        violations.collect(url)

    # The dashboard: plotly draws its figures and the page refreshes itself.
    browser.get(f"{web}/admin/metrics/")
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#fig-requests .main-svg"), 15)
    wait_until(lambda: "Loading" not in browser.find_element(By.ID, "updated").text, 10)
    violations.collect("dashboard")

    assert violations.found == [], "\n".join(violations.found)
