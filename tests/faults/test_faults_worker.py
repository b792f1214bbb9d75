"""Worker faults: killed mid-batch (case 1)."""

from __future__ import annotations

import time

from common.fault_support import differences, redis_versions, wait_ready, wait_writing
from common.support import wait_until
from sqlalchemy import select

from ccadmin.content.seed import seed_content
from ccadmin.extensions import db
from ccadmin.models import OutboxEvent

# Entries in the batch (one outbox event, the bulk lane): enough that
# publishing it takes a visible fraction of a second, so the kill lands while
# the drainer is writing.
BATCH = 30_000


def unpublished_events() -> list[int]:
    event_ids = db.session.scalars(
        select(OutboxEvent.id).where(OutboxEvent.published_at.is_(None))
    ).all()
    db.session.rollback()
    return event_ids


def test_kill_9_mid_batch_every_change_ends_live(fault_app, private_redis, processes):
    """Case 1: kill -9 the only worker while it writes a batch; the claim dies with its
    database connection, and a worker started afterwards publishes the whole batch."""
    client = private_redis.start()
    victim = processes.worker()
    wait_ready(client)

    seed_content("spring", BATCH, batch_size=BATCH)
    batch_event = max(unpublished_events())
    wait_writing(client, "spring", BATCH)
    victim.kill()
    killed_at = time.monotonic()
    user_ids = [str(number) for number in range(1, BATCH + 1)]
    lost = sum(version is None for version in redis_versions(client, "spring", user_ids).values())
    assert lost > 0
    # The batch's event stays claimed by nobody (the campaign's own event may
    # or may not be published by then).
    assert batch_event in unpublished_events()

    processes.worker()
    wait_until(lambda: not differences(client, "spring"), timeout=40, interval=0.5)
    wait_until(lambda: not unpublished_events(), timeout=10, interval=0.2)
    recovery = time.monotonic() - killed_at
    print(f"case 1: {lost} of {BATCH} not live at the kill; all live {recovery:.1f} s later")
