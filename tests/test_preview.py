"""Preview as the caller sees it: byte for byte what a real API process answers."""

from __future__ import annotations

import pytest
from common import api_support
from common.api_support import ENV_KEY, call
from common.publishing_support import make_campaign, save_entry, stored_entry
from common.support import login, wait_until
from sqlalchemy import select

from ccadmin import keys
from ccadmin.content import preview
from ccadmin.extensions import db
from ccadmin.models import ContentEntry

TIMEOUT = 30.0
start_api = api_support.start_api


@pytest.fixture
def live(app, redis_client, spawn):
    """Two campaigns published by a real worker, one per fallback policy."""
    spawn(["-m", "workers"])
    spring = make_campaign("spring")
    strict = make_campaign("strict", is_default=False, fallback_policy="not_found")
    save_entry(spring, "42", "Hello ünïcode")
    save_entry(spring, "a b@c+d", "special id")
    save_entry(strict, "7", "strict content")
    wait_until(lambda: redis_client.exists(keys.READY), TIMEOUT)
    for slug, user_id in (("spring", "42"), ("spring", "a b@c+d"), ("strict", "7")):
        wait_until(lambda s=slug, u=user_id: stored_entry(redis_client, s, u), TIMEOUT)
    return spring, strict


def on_the_wire(answer) -> list[tuple[str, str]]:
    return [
        (name.lower(), value)
        for name, value in answer.headers.items()
        if name.lower() not in {header.lower() for header in preview.SERVER_HEADERS}
    ]


@pytest.mark.parametrize(
    ("slug", "user_id", "status"),
    [
        ("spring", "42", 200),
        ("spring", "a b@c+d", 200),
        ("spring", "nobody", 200),
        ("strict", "7", 200),
        ("strict", "nobody", 404),
    ],
)
def test_preview_matches_a_real_api_call_byte_for_byte(
    live, settings, start_api, slug, user_id, status
):
    port = start_api()
    campaign = next(c for c in live if c.slug == slug)
    path = preview.content_path(campaign, user_id)
    real = call(port, path, headers={"X-API-Key": ENV_KEY})
    status_line, headers, body = preview.call_api(settings, path)
    assert real.status == status == int(status_line.split()[0])
    assert body == real.body
    # The same headers and values (waitress writes them in its own order).
    assert sorted((name.lower(), value) for name, value in headers) == sorted(on_the_wire(real))


def test_entry_page_shows_what_the_caller_receives(client, make_user, live):
    make_user("vi@example.com", role="viewer")
    login(client, "vi@example.com")
    entry = db.session.scalars(select(ContentEntry).where(ContentEntry.user_id == "42")).one()
    page = client.get(f"/admin/content/details/?id={entry.id}").get_data(as_text=True)
    assert 'id="preview-status">200 OK<' in page
    assert 'id="preview-outcome">content<' in page
    assert 'id="preview-live">live<' in page
    assert "Hello ünïcode" in page
    assert "ETag" in page and "private, max-age=60" in page


def test_campaign_tools_preview_any_user_and_fallbacks(client, make_user, live, redis_client):
    spring, strict = live
    make_user("vi@example.com", role="viewer")
    login(client, "vi@example.com")
    page = client.get(
        f"/admin/campaign-tools/{spring.id}/", query_string={"user_id": "nobody"}
    ).get_data(as_text=True)
    assert 'id="preview-outcome">fallback (default fields)<' in page
    assert "&#34;has_content&#34;: false" in page or '"has_content": false' in page
    page = client.get(
        f"/admin/campaign-tools/{strict.id}/", query_string={"user_id": "nobody"}
    ).get_data(as_text=True)
    assert 'id="preview-status">404 Not Found<' in page
    assert "fallback (404: the message renders empty)" in page
    # A user id the API would refuse is explained, not sent.
    page = client.get(
        f"/admin/campaign-tools/{spring.id}/", query_string={"user_id": "x" * 200}
    ).get_data(as_text=True)
    assert "At most 128 characters." in page and 'id="caller-preview"' not in page


def test_preview_says_when_redis_is_behind(client, make_user, live, redis_client):
    spring, _ = live
    make_user("vi@example.com", role="viewer")
    login(client, "vi@example.com")
    # The saved version is ahead of what Redis serves (as while publishing).
    db.session.execute(
        ContentEntry.__table__.update()
        .where(ContentEntry.user_id == "42")
        .values(version=ContentEntry.version + 1)
    )
    db.session.commit()
    page = client.get(
        f"/admin/campaign-tools/{spring.id}/", query_string={"user_id": "42"}
    ).get_data(as_text=True)
    assert 'id="preview-live">publishing<' in page
