"""API keys on the Connected Content API: header forms, sources, scopes, revocation."""

from __future__ import annotations

from base64 import b64encode

import pytest
from common import api_support
from common.api_support import (
    ENV_KEY,
    call,
    mark_ready,
    publish_api_key,
    publish_campaign,
    publish_entry,
    revoke_api_key,
)
from common.support import wait_until

store = api_support.store
start_api = api_support.start_api

REDIS_KEY = "cc_admin-managed-key-for-promo"


def basic(username: str, password: str) -> dict[str, str]:
    token = b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def campaigns(store):
    """Two protected campaigns and a public one, each with user 1's content."""
    for slug in ("promo", "other"):
        publish_campaign(store, slug)
        publish_entry(store, slug, "1", 1, {"message": f"{slug} for 1"})
    publish_campaign(store, "open", public=True)
    publish_entry(store, "open", "1", 1, {"message": "open for 1"})
    mark_ready(store)
    return store


def test_missing_or_wrong_key_is_401_with_a_challenge(campaigns, start_api):
    port = start_api()
    for headers in (
        {},
        {"X-API-Key": "wrong"},
        {"Authorization": "Bearer wrong"},
        basic("braze", "wrong"),
        {"Authorization": "Basic not-base64!"},
        {"Authorization": f"Token {ENV_KEY}"},
    ):
        answer = call(port, "/v1/promo?user_id=1", headers=headers)
        assert answer.status == 401, headers
        assert answer.json()["error"] == "unauthorized"
        challenge = answer.header("WWW-Authenticate")
        assert "Bearer" in challenge and "Basic" in challenge
    # A key in the URL ends up in logs: it is never accepted there.
    in_query = call(port, f"/v1/promo?user_id=1&api_key={ENV_KEY}&key={ENV_KEY}")
    assert in_query.status == 401


def test_every_header_form_is_accepted(campaigns, start_api):
    port = start_api()
    for headers in (
        {"X-API-Key": ENV_KEY},
        {"Authorization": f"Bearer {ENV_KEY}"},
        {"Authorization": f"bearer {ENV_KEY}"},
        basic("braze", ENV_KEY),
        basic("", ENV_KEY),
        {"X-API-Key": "env-key-two"},  # the second key of a rotation
    ):
        answer = call(port, "/v1/promo?user_id=1", headers=headers)
        assert answer.status == 200, headers
        assert answer.json()["message"] == "promo for 1"


def test_redis_keys_are_scoped_to_their_campaigns(campaigns, start_api):
    publish_api_key(campaigns, REDIS_KEY, campaigns=["promo"])
    publish_api_key(campaigns, "cc_unscoped-key", campaigns=None)
    port = start_api()

    assert call(port, "/v1/promo?user_id=1", headers={"X-API-Key": REDIS_KEY}).status == 200
    scoped_out = call(port, "/v1/other?user_id=1", headers={"X-API-Key": REDIS_KEY})
    assert scoped_out.status == 403
    assert scoped_out.json()["error"] == "forbidden"
    for slug in ("promo", "other"):
        answer = call(port, f"/v1/{slug}?user_id=1", headers={"X-API-Key": "cc_unscoped-key"})
        assert answer.status == 200
        # The environment's keys read every campaign.
        assert call(port, f"/v1/{slug}?user_id=1", headers={"X-API-Key": ENV_KEY}).status == 200


def test_a_key_published_or_revoked_in_redis_takes_effect_without_restart(campaigns, start_api):
    port = start_api()
    headers = {"Authorization": f"Bearer {REDIS_KEY}"}
    assert call(port, "/v1/promo?user_id=1", headers=headers).status == 401

    publish_api_key(campaigns, REDIS_KEY)
    wait_until(lambda: call(port, "/v1/promo?user_id=1", headers=headers).status == 200, 5)

    revoke_api_key(campaigns, REDIS_KEY)
    wait_until(lambda: call(port, "/v1/promo?user_id=1", headers=headers).status == 401, 5)
    assert call(port, "/v1/promo?user_id=1", headers={"X-API-Key": ENV_KEY}).status == 200


def test_a_public_campaign_needs_no_key(campaigns, start_api):
    port = start_api()
    answer = call(port, "/v1/open?user_id=1")
    assert answer.status == 200
    assert answer.json()["message"] == "open for 1"
    # A wrong key on a public campaign is not an error either: it is not read.
    assert call(port, "/v1/open?user_id=1", headers={"X-API-Key": "wrong"}).status == 200
