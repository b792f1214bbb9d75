"""The drainers outlive Redis: a worker started while Redis is down, Redis gone six times
in a row, Redis killed under load and back empty, and an entry that cannot be rendered
met by a full rebuild."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

from common.fault_support import (
    KeepAliveCallers,
    database_dialect,
    database_versions,
    differences,
    redis_versions,
    unpublished,
    wait_ready,
)
from common.publishing_support import make_campaign, save_entry
from common.support import wait_until
from sqlalchemy import select, text

from ccadmin import keys
from ccadmin.content.seed import seed_content
from ccadmin.extensions import db
from ccadmin.models import Campaign, ContentEntry, PublishFailure

OUTAGES = 6
ENTRIES = 2_000
# Redis killed under load: how long it stays down, and by when service must be whole.
OUTAGE_SECONDS = 10
RECOVERY_TARGET = 20.0
SAVES_PER_SECOND = 25
LOAD_ENTRIES = 3_000


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
    print(
        f"{OUTAGES} Redis outages: {OUTAGES} saves made during them all live "
        f"{time.monotonic() - back_at:.1f} s after the last, worker up throughout"
    )


class SteadySaves(threading.Thread):
    """Saves entries at SAVES_PER_SECOND until stopped, in an app context of its own:
    every other save edits a seeded entry, the rest create new ones. Counts the commits."""

    def __init__(self, app, campaign_id: int, seeded: int) -> None:
        super().__init__(name="steady-saves", daemon=True)
        self.app = app
        self.campaign_id = campaign_id
        self.seeded = seeded
        self.committed = 0
        self.errors: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with self.app.app_context():
            campaign = db.session.get(Campaign, self.campaign_id)
            next_at = time.monotonic()
            number = 0
            while not self.stopping.is_set():
                number += 1
                user_id = self.seeded + number if number % 2 else number % self.seeded + 1
                try:
                    save_entry(campaign, str(user_id), f"steady save {number}")
                    self.committed += 1
                except Exception as error:
                    db.session.rollback()
                    self.errors.append(f"{type(error).__name__}: {error}")
                next_at = max(next_at + 1 / SAVES_PER_SECOND, time.monotonic())
                self.stopping.wait(next_at - time.monotonic())
            db.session.remove()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)


def readyz_status(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def test_redis_killed_for_10_s_and_back_empty_under_load(fault_app, private_redis, processes):
    """Two workers and an API; saves keep coming and callers keep reading /data while
    Redis is killed (SIGKILL), kept down 10 s and started again empty. No worker exits,
    every save commits, and within 20 s of Redis returning the workers have rebuilt it
    (the ready marker set, /readyz 200) with every save live."""
    client = private_redis.start()
    workers = [processes.worker(), processes.worker()]
    wait_ready(client)
    campaign = make_campaign("spring")
    seed_content("spring", LOAD_ENTRIES)
    wait_until(lambda: not differences(client, "spring") and not unpublished(), timeout=30)
    _api, port = processes.api()
    saves = SteadySaves(fault_app, campaign.id, LOAD_ENTRIES)
    saves.start()
    callers = KeepAliveCallers(port)
    callers.start(range(1, 3), seconds=2 + OUTAGE_SECONDS + 5)
    time.sleep(2)

    committed_before = saves.committed
    private_redis.kill()
    # Started without persistence: nothing on disk to come back from.
    assert not any(private_redis.folder.iterdir())
    time.sleep(OUTAGE_SECONDS)
    saved_during = saves.committed - committed_before
    assert saved_during > 0 and not saves.errors, saves.errors[:5]
    for worker in workers:
        assert worker.alive(), worker.log()

    client = private_redis.start()
    returned_at = time.monotonic()
    # Every save committed until Redis returned (and a few after) must go live.
    written = database_versions("spring")
    ready_seconds = readyz_seconds = live_seconds = None
    while None in (ready_seconds, readyz_seconds, live_seconds):
        elapsed = time.monotonic() - returned_at
        assert elapsed < RECOVERY_TARGET, (ready_seconds, readyz_seconds, live_seconds)
        if ready_seconds is None and client.exists(keys.READY):
            ready_seconds = elapsed
        if readyz_seconds is None and readyz_status(port) == 200:
            readyz_seconds = elapsed
        stored = redis_versions(client, "spring", written)
        if live_seconds is None and all(
            (stored[user_id] or 0) >= version for user_id, version in written.items()
        ):
            live_seconds = elapsed
        time.sleep(0.05)

    saves.stop()
    assert not saves.errors, saves.errors[:5]
    wait_until(lambda: not differences(client, "spring") and not unpublished(), timeout=20)
    for worker in workers:
        assert worker.alive(), worker.log()
    # Back empty: one full rebuild at the first start and one after the restart.
    assert sum(worker.log().count("full rebuild started") for worker in workers) == 2
    outcomes = callers.join()
    assert set(outcomes) <= {"200", "503"}, outcomes
    print(
        f"Redis killed under load: {saved_during} saves during the {OUTAGE_SECONDS} s outage, "
        f"{saves.committed} in all, 0 lost; ready {ready_seconds:.1f} s after Redis returned "
        f"(/readyz 200 at {readyz_seconds:.1f} s), every write live at {live_seconds:.1f} s; "
        f"/data answers {dict(outcomes)}; both workers up throughout"
    )


def test_entry_that_cannot_be_rendered_is_set_aside_and_the_rebuild_finishes(
    fault_app, private_redis, processes
):
    """A row written straight into the database that no publish can render (an unpaired
    surrogate on SQLite; on PostgreSQL, whose jsonb refuses those, JSON nested deeper
    than the decoder takes): the full rebuild sets it aside (publish_failure), publishes
    every other entry and sets the ready marker; /readyz answers 200."""
    seed_content("spring", ENTRIES)
    poisoned = db.session.scalar(select(ContentEntry).where(ContentEntry.user_id == "7"))
    poisoned_id, poisoned_version = poisoned.id, poisoned.version
    if database_dialect() == "postgresql":
        poison, expected_error = '{"message": ' + "[" * 3_000 + "]" * 3_000 + "}", "Recursion"
        assignment = "CAST(:fields AS jsonb)"
    else:
        # JSON text with the escape, as another client could store it.
        poison, expected_error, assignment = '{"message": "\\ud800"}', "UnicodeEncode", ":fields"
    db.session.execute(
        text(f"UPDATE content_entry SET fields = {assignment} WHERE id = :id"),
        {"fields": poison, "id": poisoned_id},
    )
    db.session.commit()

    client = private_redis.start()
    processes.worker()
    wait_ready(client)
    wait_until(lambda: not unpublished(), timeout=30)
    assert differences(client, "spring") == {"7": (poisoned_version, None)}
    failure = db.session.scalars(select(PublishFailure)).one()
    assert (failure.content_entry_id, failure.version) == (poisoned_id, poisoned_version)
    assert failure.error.startswith(expected_error), failure.error
    db.session.rollback()
    assert client.exists(keys.READY)

    _api, port = processes.api()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
        assert response.status == 200
    print(f"poison row: set aside, {ENTRIES - 1} other entries live, ready")
