"""Every admin page in headless Chromium at 1366 px: never wider than the window, and
no serious or critical accessibility violation found by axe-core."""

from __future__ import annotations

import pytest
from common.browser_support import CHROMIUM, browser, log_in  # noqa: F401
from common.import_support import upload_and_stage
from common.publishing_support import make_campaign, save_fields
from common.support import login, start_admin
from sqlalchemy import select

from ccadmin.approvals import workflow
from ccadmin.extensions import db
from ccadmin.models import AdminUser, ApiKey, AuditEvent, ContentEntry, ManagementToken

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)"),
]

SCHEMA = [{"name": "message", "max_length": 140}, {"name": "image_url", "max_length": 400}]
# One unbroken value longer than any screen is wide.
LONG_URL = "https://cdn.example.com/" + "x" * 300 + ".png"
SERIOUS = ("serious", "critical")
# "Checkboxes sharing a name must be grouped" is not a WCAG requirement (axe-core 4
# dropped the rule); a list's row checkboxes share the name the bulk action posts.
AXE_OPTIONS = '{"rules": {"checkboxgroup": {"enabled": false}}}'


@pytest.fixture
def pages(app, client, make_user) -> list[str]:
    """Every kind of admin page, with records to show (paths)."""
    make_user("admin@example.com", role="admin")
    campaign = make_campaign("spring", field_schema=SCHEMA)
    save_fields(campaign, "42", {"message": "Hello", "image_url": LONG_URL})
    save_fields(campaign, "u" * 128, {"message": "A long user id", "image_url": ""})
    login(client, "admin@example.com")
    staged = upload_and_stage(
        client, campaign.id, "spring.csv", b"user_id,message\n42,Changed\n7,New\n"
    )
    entry = db.session.scalars(select(ContentEntry).where(ContentEntry.user_id == "42")).one()
    user = db.session.scalars(select(AdminUser)).first()
    audit = db.session.scalars(select(AuditEvent)).first()
    db.session.add(ApiKey(name="braze", prefix="cc_abcdefgh", secret_hash="0" * 64))
    db.session.commit()
    api_key = db.session.scalars(select(ApiKey)).one()
    token = db.session.scalars(select(ManagementToken)).first()
    # A change request with a long value and a comment, seen by someone who may decide it.
    change = workflow.EntryChange("42", "update", {"message": "Changed", "image_url": LONG_URL})
    change_request = workflow.open_entries(campaign, [change], "editor@example.com")
    workflow.add_comment(change_request, "editor@example.com", "For the spring send. " * 20)
    db.session.commit()
    paths = [
        "/admin/",
        "/admin/content/",
        # A filter applied: its row above the table must still fit.
        f"/admin/content/?flt0_0={campaign.id}&flt1_2=seed&search=hello",
        "/admin/content/new/",
        f"/admin/content/details/?id={entry.id}",
        f"/admin/content/edit/?id={entry.id}",
        "/admin/campaigns/",
        "/admin/campaigns/new/",
        f"/admin/campaigns/details/?id={campaign.id}",
        f"/admin/campaigns/edit/?id={campaign.id}",
        "/admin/imports/",
        f"/admin/imports/{staged.id}/",
        f"/admin/campaign-tools/{campaign.id}/",
        "/admin/audit/",
        f"/admin/audit/details/?id={audit.id}",
        "/admin/users/",
        "/admin/users/new/",
        f"/admin/users/edit/?id={user.id}",
        "/admin/api_keys/",
        "/admin/api_keys/new/",
        f"/admin/api_keys/details/?id={api_key.id}",
        "/admin/management-tokens/",
        "/admin/management-tokens/new/",
        "/admin/metrics/",
        "/admin/change-requests/",
        f"/admin/change-requests/details/?id={change_request.id}",
    ]
    if token is not None:
        paths.append(f"/admin/management-tokens/details/?id={token.id}")
    return paths


def test_every_page_fits_1366_px_and_passes_axe(pages, spawn, browser):  # noqa: F811
    web = start_admin(spawn)
    browser.set_window_size(1366, 900)
    problems = check_page(browser, web, "/login")
    log_in(browser, web, "admin@example.com")
    for path in pages:
        problems += check_page(browser, web, path)
    assert problems == [], "\n".join(problems)


def check_page(browser, web: str, path: str) -> list[str]:  # noqa: F811 (the fixture)
    """What is wrong with one page: its width, axe's findings, its <h1>, its language."""
    from axe_selenium_python import Axe

    problems = []
    browser.get(web + path)
    assert browser.current_url.endswith(path), path
    wide = browser.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth]"
    )
    if wide[0] > wide[1]:
        problems.append(f"{path}: {wide[0]} px wide in a {wide[1]} px window")
    axe = Axe(browser)
    axe.inject()
    violations = axe.run(options=AXE_OPTIONS)["violations"]
    for violation in violations:
        if violation["impact"] in SERIOUS:
            targets = [node["target"] for node in violation["nodes"]][:3]
            problems.append(f"{path}: {violation['id']} ({violation['impact']}) {targets}")
    headings = browser.execute_script("return document.querySelectorAll('h1').length")
    if headings != 1:
        problems.append(f"{path}: {headings} <h1> elements")
    if browser.execute_script("return document.documentElement.lang") != "en":
        problems.append(f"{path}: no lang")
    return problems
