"""Headless Chromium for the browser tests: the driver fixture and page helpers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from common.support import PASSWORD

CHROMIUM = next(
    (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None
)
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)
# Where the content list screenshot goes, for a human to look at after a run.
# What every browser test module sets as its `pytestmark`.
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)"),
]
SCREENSHOT_DIR = Path(os.environ.get("CCADMIN_SCREENSHOT_DIR", "/tmp"))


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium driven through the system chromedriver (nothing downloaded)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def fill(driver, element_id: str, text: str) -> None:
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(text)


def submit(driver, element) -> None:
    """Click a button or link and wait for the next page to replace this one."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, 10).until(expected_conditions.staleness_of(page))


def save(driver) -> None:
    from selenium.webdriver.common.by import By

    submit(driver, driver.find_element(By.CSS_SELECTOR, 'input[type="submit"][value="Save"]'))


def log_in(driver, web: str, email: str) -> None:
    """Log in through the login page."""
    from selenium.webdriver.common.by import By

    driver.get(f"{web}/login")
    fill(driver, "email", email)
    fill(driver, "password", PASSWORD)
    submit(driver, driver.find_element(By.ID, "login"))
