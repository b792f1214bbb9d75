"""The ingest API as the sending tools use it, over HTTP to a running web process.

The bodies, headers, batching and retries follow the tools' public
documentation: Segment's classic Webhooks destination (one event per request,
`X-Signature` = hex HMAC-SHA1 of the body with the shared secret), Segment's
Webhooks (Actions) with batching (a bare JSON array of up to 4,000 events),
RudderStack's Webhook destination (one event, traits under `context.traits`),
and Census's connection test (`HEAD`, then an empty `POST`). The tools retry
5xx, 408 and 429 and drop other 4xx, so every answer here is checked for
what the tool would do with it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import random
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from common.manage_support import SCHEMA, make_token
from common.publishing_support import make_campaign
from common.support import start_admin
from sqlalchemy import select

from ccadmin.extensions import db
from ccadmin.models import ContentEntry, ManagementToken

EVENTS = "/manage/v1/campaigns/spring/events"
SHARED_SECRET = "segment-shared-secret"


@pytest.fixture
def campaign(app):
    return make_campaign("spring", field_schema=SCHEMA)


def send(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    """One request as a tool sends it; (status, headers, parsed JSON or None)."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            status, answer_headers = response.status, response.headers
    except urllib.error.HTTPError as error:
        raw, status, answer_headers = error.read(), error.code, error.headers
    return status, answer_headers, json.loads(raw) if raw else None


def segment_identify(user_id: str, at: str, message_id: str, **traits: str) -> dict[str, Any]:
    """A classic Segment identify call as its Webhooks destination forwards it."""
    return {
        "anonymousId": "23adfd82-aa0f-45a7-a756-24f2a7a4c895",
        "channel": "server",
        "context": {"library": {"name": "analytics-node", "version": "6.2.0"}, "ip": "8.8.8.8"},
        "integrations": {},
        "messageId": message_id,
        "originalTimestamp": at,
        "receivedAt": at,
        "sentAt": at,
        "timestamp": at,
        "traits": traits,
        "type": "identify",
        "userId": user_id,
        "version": 2,
    }


def rudderstack_identify(user_id: str, at: str, **traits: str) -> dict[str, Any]:
    """RudderStack's Webhook destination: identify traits travel in context.traits."""
    return {
        "type": "identify",
        "userId": user_id,
        "anonymousId": "e4c8b52e-1d64-4b6f-a5c8-1b0d0d3a6a52",
        "rudderId": "8f8fa6b5-8e24-489c-8e22-61f23f2e364f",
        "messageId": f"rudder-{user_id}-{at}",
        "channel": "web",
        "context": {"traits": traits, "library": {"name": "RudderLabs JavaScript SDK"}},
        "originalTimestamp": at,
        "sentAt": at,
        "receivedAt": at,
        "timestamp": at,
    }


def signed(body: bytes, secret: str = SHARED_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def stored(campaign) -> dict[str, dict[str, str]]:
    db.session.expire_all()
    return {
        entry.user_id: entry.fields
        for entry in db.session.scalars(
            select(ContentEntry).where(ContentEntry.campaign_id == campaign.id)
        )
    }


def test_segment_classic_signed_events_and_a_late_retry(campaign, spawn):
    token = make_token("segment")
    db.session.execute(
        ManagementToken.__table__.update()
        .where(ManagementToken.name == "segment")
        .values(signing_secret=SHARED_SECRET)
    )
    db.session.commit()
    web = start_admin(spawn)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Segment.io/1.0",
        "Authorization": f"Bearer {token}",
    }

    first = json.dumps(
        segment_identify("42", "2026-12-07T10:00:00.000Z", "m-1", message="First offer")
    ).encode()
    newer = json.dumps(
        segment_identify("42", "2026-12-07T10:05:00.000Z", "m-2", message="Newer offer")
    ).encode()
    status, _, answer = send("POST", web + EVENTS, newer, {**headers, "X-Signature": signed(newer)})
    assert status == 200 and answer["results"][0]["status"] == "created"
    # The first event's delivery failed earlier; Segment retries it now, hours late.
    status, _, answer = send("POST", web + EVENTS, first, {**headers, "X-Signature": signed(first)})
    assert status == 200, "a 2xx, so Segment stops retrying"
    assert answer["results"][0]["status"] == "superseded"
    assert stored(campaign) == {"42": {"message": "Newer offer"}}

    # A body signed with another secret, or not signed: 401, which Segment drops.
    forged = json.dumps(
        segment_identify("42", "2026-12-07T11:00:00.000Z", "m-3", message="Forged")
    ).encode()
    for signature in (signed(forged, "another-secret"), ""):
        status, _, answer = send(
            "POST", web + EVENTS, forged, {**headers, "X-Signature": signature}
        )
        assert status == 401 and answer["error"] == "invalid_signature"
    assert stored(campaign) == {"42": {"message": "Newer offer"}}


def test_a_segment_actions_batch_of_4000_with_one_bad_event(campaign, spawn):
    token = make_token("segment-actions")
    web = start_admin(spawn)
    events = [
        segment_identify(str(n), "2026-12-07T10:00:00.000Z", f"a-{n}", message=f"Offer {n}")
        for n in range(4000)
    ]
    events[1234]["traits"]["message"] = "far too long for the field"
    body = json.dumps(events).encode()
    started = time.perf_counter()
    status, _, answer = send(
        "POST",
        web + EVENTS,
        body,
        {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    seconds = time.perf_counter() - started
    print(f"4,000-event Segment batch: {seconds:.2f} s")
    assert status == 200, "Segment fails the whole batch on anything but a 2xx"
    assert (answer["created"], answer["invalid"]) == (3999, 1)
    (bad,) = [result for result in answer["results"] if result["status"] == "invalid"]
    assert bad["index"] == 1234 and "message" in bad["errors"]
    assert len(stored(campaign)) == 3999


def test_rudderstack_events_and_the_rate_limit(campaign, spawn):
    token = make_token("rudderstack")
    web = start_admin(spawn, env={"CCADMIN_MANAGE_RATE_LIMIT": "3"})
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    answers = []
    for minute in range(4):
        event = rudderstack_identify("7", f"2026-12-07T10:0{minute}:00.000Z", message=f"m{minute}")
        answers.append(send("POST", web + EVENTS, json.dumps(event).encode(), headers))
    assert [status for status, _, _ in answers] == [200, 200, 200, 429]
    status, answer_headers, answer = answers[3]
    assert answer["error"] == "rate_limited"
    # RudderStack and Segment retry a 429 after Retry-After (seconds).
    assert 1 <= int(answer_headers["Retry-After"]) <= 60
    assert stored(campaign) == {"7": {"message": "m2"}}


def test_a_census_connection_test(campaign, spawn):
    token = make_token("census")
    web = start_admin(spawn)
    batch = "/manage/v1/campaigns/spring/content:batch"
    for path in (batch, EVENTS):
        status, _, _ = send("HEAD", web + path, headers={"Authorization": f"Bearer {token}"})
        assert status == 200
        status, _, answer = send(
            "POST", web + path, b"", {"Authorization": f"Bearer {token}", "Content-Length": "0"}
        )
        assert status == 200 and answer["results"] == []
        status, _, _ = send("HEAD", web + path, headers={"Authorization": "Bearer ccm_wrong"})
        assert status == 401
    assert stored(campaign) == {}


def test_a_shuffled_concurrent_replay_ends_with_the_newest_event(campaign, spawn):
    """Retries and parallel deliveries: batches and single events from four connections."""
    token = make_token("replay")
    web = start_admin(spawn)
    users, per_user = 40, 25
    stream = [
        segment_identify(
            str(user), f"2026-12-07T10:{step:02d}:00.000Z", f"{user}-{step}", message=f"step {step}"
        )
        for user in range(users)
        for step in range(per_user)
    ]
    random.Random(18).shuffle(stream)
    # Every fifth delivery is a single event (classic), the rest batches of 50 (Actions).
    deliveries: queue.Queue = queue.Queue()
    position = 0
    while position < len(stream):
        size = 1 if deliveries.qsize() % 5 == 4 else 50
        deliveries.put(json.dumps(stream[position : position + size]).encode())
        position += size
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    statuses: list[int] = []

    def sender() -> None:
        while True:
            try:
                body = deliveries.get_nowait()
            except queue.Empty:
                return
            statuses.append(send("POST", web + EVENTS, body, headers)[0])

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(statuses) == {200}
    assert stored(campaign) == {
        str(user): {"message": f"step {per_user - 1}"} for user in range(users)
    }
