"""Drift behind our back (case 12): keys deleted and old versions written straight into
Redis, repaired and reported by `flask reconcile` and by the sweeper's periodic run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from common.fault_support import PROJECT_ROOT, differences, redis_entries, unpublished, wait_ready
from common.publishing_support import publish_pending
from common.support import login, wait_until

from ccadmin import keys
from ccadmin.content.seed import seed_content
from workers.rebuild import reconcile
from workers.sweeper import RECONCILE_INTERVAL

ENTRIES = 3_000
# 1% of the keys deleted, 0.1% set back to the version before.
DELETED = [str(number) for number in range(100, ENTRIES + 1, 100)]
STALE = [str(number) for number in range(50, ENTRIES + 1, 1_000)]
ALL_USERS = [str(number) for number in range(1, ENTRIES + 1)]


def inject_drift(client, old_entries: dict[str, tuple[int, bytes]]) -> None:
    """Delete DELETED and write STALE's old version and body, as a stray client would."""
    assert len(DELETED) == ENTRIES // 100 and len(STALE) == ENTRIES // 1_000
    assert not set(DELETED) & set(STALE)
    client.delete(*(keys.entry_key("spring", user_id) for user_id in DELETED))
    for user_id in STALE:
        version, body = old_entries[user_id]
        client.hset(
            keys.entry_key("spring", user_id),
            mapping={keys.ENTRY_VERSION_FIELD: version, keys.ENTRY_BODY_FIELD: body},
        )
    drifted = differences(client, "spring")
    assert {user_id: pair[1] for user_id, pair in drifted.items()} == {
        **dict.fromkeys(DELETED),
        **dict.fromkeys(STALE, 1),
    }


def seed_and_publish() -> None:
    """A new version of every entry, published here (no worker runs)."""
    seed_content("spring", ENTRIES)
    publish_pending()


def assert_repaired(counts: dict[str, int]) -> None:
    """Exactly the injected drift, nothing else."""
    assert counts["entries_checked"] == ENTRIES
    assert (counts["missing"], counts["outdated"], counts["repaired"]) == (
        len(DELETED),
        len(STALE),
        len(DELETED) + len(STALE),
    )
    for other in ("wrong_kind", "ahead", "orphans"):
        assert counts.get(other, 0) == 0


def assert_admin_shows(fault_app, make_user, reason: str) -> None:
    """The live metrics page carries the last report's reason and numbers."""
    make_user("ops@example.com", role="viewer")
    browser = fault_app.test_client()
    login(browser, "ops@example.com")
    home = browser.get("/admin/metrics/").get_data(as_text=True)
    assert f"({reason}," in home
    assert f"checked {ENTRIES} entries" in home
    assert f"repaired <strong>{len(DELETED) + len(STALE)}</strong>" in home
    assert f"missing {len(DELETED)}, outdated {len(STALE)}," in home


def test_reconcile_command_repairs_and_reports_drift(fault_app, private_redis, make_user):
    """Case 12 on demand: `flask --app wsgi reconcile` repairs 1% deleted and 0.1% stale
    keys, prints and stores exactly those counts, and a second run finds nothing."""
    client = private_redis.start()
    seed_and_publish()
    old_entries = redis_entries(client, "spring", STALE)
    seed_and_publish()
    assert not differences(client, "spring")
    inject_drift(client, old_entries)

    started = time.monotonic()
    command = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "reconcile"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "REDIS_URL": private_redis.url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    seconds = time.monotonic() - started
    assert command.returncode == 0, command.stderr
    printed = dict(
        line.strip().split(": ") for line in command.stdout.splitlines() if line.startswith("  ")
    )
    assert_repaired({name: int(count) for name, count in printed.items()})
    assert not differences(client, "spring")
    report = json.loads(client.get(keys.RECONCILE_REPORT))
    assert report["reason"] == "on demand"
    assert_repaired(report["counts"])
    assert_admin_shows(fault_app, make_user, "on demand")
    assert reconcile()["repaired"] == 0
    print(
        f"case 12 (command): {len(DELETED)} deleted + {len(STALE)} stale of {ENTRIES} "
        f"repaired and reported by `flask reconcile` in {seconds:.1f} s (process included)"
    )


def test_periodic_reconcile_repairs_and_reports_drift(
    fault_app, private_redis, processes, make_user
):
    """Case 12 periodically: when RECONCILE_INTERVAL runs out, the worker's sweeper
    repairs the same drift unasked and reports exactly what it fixed."""
    client = private_redis.start()
    processes.worker()
    wait_ready(client)
    seed_content("spring", ENTRIES)
    wait_until(lambda: not differences(client, "spring") and not unpublished(), timeout=20)
    old_entries = redis_entries(client, "spring", STALE)
    seed_content("spring", ENTRIES)
    wait_until(lambda: not differences(client, "spring") and not unpublished(), timeout=20)
    # The first build scheduled the next reconcile an interval later; no run yet.
    assert 0 < client.ttl(keys.RECONCILE_LOCK) <= RECONCILE_INTERVAL
    assert not client.exists(keys.RECONCILE_REPORT)
    inject_drift(client, old_entries)

    # The interval runs out now rather than in ten minutes.
    client.expire(keys.RECONCILE_LOCK, 1)
    started = time.monotonic()
    wait_until(lambda: client.exists(keys.RECONCILE_REPORT), timeout=15, interval=0.1)
    recovery = time.monotonic() - started
    assert not differences(client, "spring")
    report = json.loads(client.get(keys.RECONCILE_REPORT))
    assert report["reason"] == "periodic"
    assert_repaired(report["counts"])
    assert 0 < client.ttl(keys.RECONCILE_LOCK) <= RECONCILE_INTERVAL
    assert_admin_shows(fault_app, make_user, "periodic")
    print(
        f"case 12 (periodic): {len(DELETED)} deleted + {len(STALE)} stale of {ENTRIES} "
        f"repaired and reported {recovery:.1f} s after the interval ran out"
    )
