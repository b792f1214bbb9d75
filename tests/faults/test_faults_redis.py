"""Redis faults seen by the admin and the worker: stopped while marketers save (case 2),
restarted from an append-only file that lost its last writes (case 5)."""

from __future__ import annotations

import json
import time

from common.fault_support import admin_save, differences, unpublished, wait_ready
from common.publishing_support import make_campaign
from common.support import login, wait_until
from sqlalchemy import select

from ccadmin import keys
from ccadmin.content.seed import seed_content
from ccadmin.extensions import db
from ccadmin.models import ContentEntry
from workers.rebuild import reconcile


def test_saves_while_redis_is_stopped_go_live_when_it_returns(
    fault_app, private_redis, processes, make_user
):
    """Case 2: every save during the outage succeeds, says "publish pending", then goes live."""
    client = private_redis.start(appendonly=True)
    worker = processes.worker()
    wait_ready(client)
    campaign = make_campaign()
    make_user("ed@example.com", role="editor")
    browser = fault_app.test_client()
    login(browser, "ed@example.com")
    for number in range(1, 6):
        assert admin_save(browser, campaign.id, str(number), f"before {number}").status_code == 302
    wait_until(lambda: not differences(client, "spring") and not unpublished(), timeout=20)

    private_redis.stop()
    for number in range(1, 11):
        entry = db.session.scalars(
            select(ContentEntry).where(ContentEntry.user_id == str(number))
        ).first()
        db.session.rollback()
        saved = admin_save(
            browser, campaign.id, str(number), f"during {number}", entry.id if entry else None
        )
        assert saved.status_code == 302, saved.get_data(as_text=True)[:500]
        page = browser.get(saved.headers["Location"])
        assert page.status_code == 200
        assert "Publish pending" in page.get_data(as_text=True)
    assert unpublished() == 10

    private_redis.start(appendonly=True)
    returned_at = time.monotonic()
    wait_until(lambda: not differences(client, "spring") and not unpublished(), timeout=30)
    assert worker.alive(), "the worker must ride out the outage"
    print(
        f"case 2: 10 saves during the outage, live {time.monotonic() - returned_at:.1f} s "
        "after Redis returned, 0 lost"
    )


def test_append_only_redis_losing_its_last_writes_is_repaired_in_one_pass(
    fault_app, private_redis, processes, make_user
):
    """Case 5: Redis killed and restarted from an append-only file missing its tail."""
    client = private_redis.start(appendonly=True)
    processes.worker()
    wait_ready(client)
    make_campaign("spring")
    seed_content("spring", 2_000)
    wait_until(lambda: not differences(client, "spring") and not unpublished(), timeout=30)
    append_only_file = private_redis.folder / "appendonly.aof"
    # Redis writes the file before it replies, so this size covers every write so far.
    kept = append_only_file.stat().st_size

    seed_content("spring", 500)  # users 1..500 get version 2
    wait_until(lambda: not differences(client, "spring") and not unpublished(), timeout=30)
    private_redis.kill()
    # What a crash loses when the last writes never reached the disk.
    with open(append_only_file, "r+b") as aof:
        aof.truncate(kept)
    client = private_redis.start(appendonly=True)
    restarted_at = time.monotonic()
    lost = differences(client, "spring")
    assert len(lost) == 500 and set(lost.values()) == {(2, 1)}

    wait_until(lambda: client.exists(keys.RECONCILE_REPORT), timeout=30)
    recovery = time.monotonic() - restarted_at
    assert not differences(client, "spring")
    report = json.loads(client.get(keys.RECONCILE_REPORT))
    assert report["reason"] == "Redis restarted"
    assert report["counts"]["outdated"] == 500
    assert report["counts"]["repaired"] == 500
    make_user("ops@example.com", role="viewer")
    browser = fault_app.test_client()
    login(browser, "ops@example.com")
    home = browser.get("/admin/metrics/").get_data(as_text=True)
    assert "Redis restarted" in home and "repaired <strong>500</strong>" in home
    assert reconcile()["repaired"] == 0
    print(f"case 5: 500 writes lost by the restart, repaired {recovery:.1f} s after it")
