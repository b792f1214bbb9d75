"""The drainers outlive Redis: a worker started while Redis is down, Redis gone six times
in a row, and an entry that cannot be rendered met by a full rebuild."""

from __future__ import annotations

import time
import urllib.request

import pytest
from fault_support import database_dialect, differences, wait_ready
from publishing_support import make_campaign, save_entry
from sqlalchemy import select, text
from support import wait_until
from test_faults_redis import unpublished

from ccadmin import keys
from ccadmin.extensions import db
from ccadmin.models import ContentEntry, PublishFailure
from ccadmin.seed import seed_content

OUTAGES = 6
ENTRIES = 2_000


def test_worker_started_while_redis_is_down_publishes_once_it_is_up(
    fault_app, private_redis, processes
):
    """Saves made before any Redis exists, a worker started into the outage: it stays
    up, and once Redis answers it builds Redis and publishes every save."""
    campaign = make_campaign()
    for number in range(1, 4):
        save_entry(campaign, str(number), f"before Redis {number}")
    assert unpublished() == 4  # the campaign's and three saves
    worker = processes.worker()
    time.sleep(5)
    assert worker.alive(), worker.log()

    client = private_redis.start()
    started_at = time.monotonic()
    wait_ready(client)
    wait_until(lambda: not differences(client, "spring") and not unpublished(), timeout=30)
    recovery = time.monotonic() - started_at
    # The drainers wait on wake-ups again: a new save goes live.
    save_entry(campaign, "4", "after Redis")
    wait_until(lambda: not differences(client, "spring") and not unpublished(), timeout=10)
    assert worker.alive()
    print(f"worker started with Redis down: 3 saves live {recovery:.1f} s after Redis started")


def test_six_short_redis_outages_in_a_row(fault_app, private_redis, processes):
    """Redis stopped and started six times; a save during each outage. The worker never
    exits, and every save goes live once Redis is back for good."""
    client = private_redis.start(appendonly=True)
    worker = processes.worker()
    wait_ready(client)
    campaign = make_campaign()
    save_entry(campaign, "0", "before")
    wait_until(lambda: not differences(client, "spring") and not unpublished(), timeout=20)

    for outage in range(1, OUTAGES + 1):
        private_redis.stop()
        save_entry(campaign, str(outage), f"during outage {outage}")
        time.sleep(1)
        assert worker.alive(), worker.log()
        private_redis.start(appendonly=True)
        time.sleep(1)
        assert worker.alive(), worker.log()
    back_at = time.monotonic()
    wait_until(lambda: not differences(client, "spring") and not unpublished(), timeout=30)
    assert worker.alive(), worker.log()
    print(f"{OUTAGES} Redis outages: {OUTAGES} saves made during them all live "
          f"{time.monotonic() - back_at:.1f} s after the last, worker up throughout")


def test_entry_that_cannot_be_rendered_is_set_aside_and_the_rebuild_finishes(
    fault_app, private_redis, processes
):
    """A row written straight into the database with an unpaired surrogate in its fields:
    the full rebuild sets it aside (publish_failure), publishes every other entry and
    sets the ready marker; /readyz answers 200."""
    if database_dialect() == "postgresql":
        pytest.skip("jsonb refuses an unpaired surrogate: no PostgreSQL row can hold one")
    seed_content("spring", ENTRIES)
    poisoned = db.session.scalar(select(ContentEntry).where(ContentEntry.user_id == "7"))
    poisoned_id, poisoned_version = poisoned.id, poisoned.version
    # JSON text with the escape, as another client could store it.
    db.session.execute(
        text("UPDATE content_entry SET fields = :fields WHERE id = :id"),
        {"fields": '{"message": "\\ud800"}', "id": poisoned_id},
    )
    db.session.commit()

    client = private_redis.start()
    processes.worker()
    wait_ready(client)
    wait_until(lambda: not unpublished(), timeout=30)
    assert differences(client, "spring") == {"7": (poisoned_version, None)}
    failure = db.session.scalars(select(PublishFailure)).one()
    assert (failure.content_entry_id, failure.version) == (poisoned_id, poisoned_version)
    assert failure.error.startswith("UnicodeEncodeError"), failure.error
    db.session.rollback()
    assert client.exists(keys.READY)

    _api, port = processes.api()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
        assert response.status == 200
    print(f"poison row: set aside, {ENTRIES - 1} other entries live, ready")
