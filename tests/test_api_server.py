"""The API's process model and probes: /metrics, forked processes, signals."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

from common import api_support
from common.api_support import (
    ENV_KEY,
    call,
    mark_ready,
    metric_value,
    publish_campaign,
    publish_entry,
)
from common.support import free_port, wait_until
from prometheus_client.parser import text_string_to_metric_families

store = api_support.store
start_api = api_support.start_api

AUTH = {"X-API-Key": ENV_KEY}


def test_metrics_count_the_requests_made(store, start_api):
    publish_campaign(store, "promo", default_fields={"message": "Hi"}, serve_at_data=True)
    publish_entry(store, "promo", "1", 1, {"message": "Hello"})
    mark_ready(store)
    port = start_api()

    served = call(port, "/data?user_id=1", headers=AUTH)
    call(port, "/data?user_id=1", headers={**AUTH, "If-None-Match": served.header("ETag")})
    call(port, "/data?user_id=2", headers=AUTH)
    call(port, "/data?user_id=1", headers={"X-API-Key": "wrong"})
    call(port, "/v1/unknown?user_id=1", headers=AUTH)

    answer = call(port, "/metrics")
    assert answer.status == 200
    assert answer.header("Content-Type").startswith("text/plain; version=0.0.4")
    text = answer.body.decode()
    expected = {
        'ccadmin_api_requests_total{campaign="promo",status="200"}': 2,
        'ccadmin_api_requests_total{campaign="promo",status="304"}': 1,
        'ccadmin_api_requests_total{campaign="promo",status="401"}': 1,
        'ccadmin_api_requests_total{campaign="-",status="404"}': 1,
        'ccadmin_api_fallbacks_total{campaign="promo"}': 1,
        'ccadmin_api_not_modified_total{campaign="promo"}': 1,
        'ccadmin_api_auth_failures_total{campaign="promo"}': 1,
    }
    for sample, value in expected.items():
        assert metric_value(text, sample) == value, sample


def _children(pid: int) -> set[int]:
    listing = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(child) for child in listing.split()}


def _answering_pid(port: int) -> int:
    text = call(port, "/metrics").body.decode()
    return int(re.search(r'ccadmin_api_info\{pid="(\d+)"\}', text).group(1))


def _two_process_api(store, spawn):
    """An API of two processes serving one public entry; (entry body, port, parent, children)."""
    publish_campaign(store, "promo", public=True, serve_at_data=True)
    body = publish_entry(store, "promo", "1", 1, {"message": "Hello"})
    mark_ready(store)
    port = free_port()
    parent = spawn(
        ["-m", "ccadmin.api"],
        env={"API_PORT": str(port), "API_PROCESSES": "2", "API_HOST": "127.0.0.1"},
        ready_url=f"http://127.0.0.1:{port}/healthz",
    )
    children = wait_until(lambda: len(_children(parent.pid)) == 2 and _children(parent.pid))
    return body, port, parent, children


def test_several_processes_share_one_port(store, spawn):
    body, port, parent, children = _two_process_api(store, spawn)
    assert parent.pid not in children

    # Fresh connections land on either process; both answer.
    seen: set[int] = set()

    def both_answered() -> bool:
        seen.add(_answering_pid(port))
        assert call(port, "/data?user_id=1").body == body
        return seen == children

    wait_until(both_answered, timeout=20, interval=0)

    # A child that dies is replaced; the port keeps answering.
    victim = next(iter(children))
    os.kill(victim, signal.SIGKILL)
    replaced = wait_until(
        lambda: (now := _children(parent.pid)) and len(now) == 2 and victim not in now and now
    )
    assert call(port, "/data?user_id=1").body == body

    # SIGTERM to the parent alone stops every child, then the parent.
    os.kill(parent.pid, signal.SIGTERM)
    assert parent.wait(timeout=15) == 0
    for child in replaced:
        assert not Path(f"/proc/{child}").exists()


def test_one_scrape_counts_every_process_and_never_goes_down(store, spawn):
    """Two processes share the port: a scrape shows the host's total, across a child's death."""
    _, port, parent, children = _two_process_api(store, spawn)
    sample = 'ccadmin_api_requests_total{campaign="promo",status="200"}'

    def scraped() -> float:
        text = call(port, "/metrics").body.decode()
        families = {family.name for family in text_string_to_metric_families(text)}
        assert "ccadmin_api_requests" in families
        return metric_value(text, sample) or 0

    answered: set[int] = set()
    requests = 0
    while answered != children or requests < 40:
        assert call(port, "/data?user_id=1").status == 200
        requests += 1
        answered.add(_answering_pid(port))
    # A sibling's counts reach the scrape within a second; never more than were made.
    assert wait_until(lambda: (value := scraped()) == requests and value, timeout=5) == requests

    victim = next(iter(children))
    time.sleep(1.2)  # the victim's last counts are in its file
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: (now := _children(parent.pid)) and len(now) == 2 and victim not in now)
    assert scraped() == requests
    for _ in range(10):
        call(port, "/data?user_id=1")
    assert wait_until(lambda: scraped() == requests + 10, timeout=5)


def test_children_of_a_killed_parent_drain_and_exit(store, spawn):
    """kill -9 of the parent: no child keeps serving on its own (docs/deploy.md restarts it)."""
    _, port, parent, children = _two_process_api(store, spawn)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(timeout=5)
    started = time.monotonic()
    wait_until(lambda: not any(Path(f"/proc/{child}").exists() for child in children), timeout=10)
    assert time.monotonic() - started < 3
    try:
        refused = call(port, "/healthz").status is None
    except OSError:
        refused = True
    assert refused


def test_each_process_is_pinned_to_its_own_cpu_unless_told_not_to(store, spawn):
    mark_ready(store)
    cpus = os.sched_getaffinity(0)
    pinned = [{cpu} for cpu in sorted(cpus)][:2] if len(cpus) > 1 else [cpus, cpus]
    for pin, expected in (("1", pinned), ("0", [cpus, cpus])):
        port = free_port()
        parent = spawn(
            ["-m", "ccadmin.api"],
            env={
                "API_PORT": str(port),
                "API_PROCESSES": "2",
                "API_HOST": "127.0.0.1",
                "API_PIN_CPUS": pin,
            },
            ready_url=f"http://127.0.0.1:{port}/healthz",
        )
        pid = parent.pid
        children = wait_until(lambda pid=pid: len(_children(pid)) == 2 and _children(pid))
        time.sleep(1.0)  # a child pins itself first thing after the fork
        masks = sorted((os.sched_getaffinity(child) for child in children), key=sorted)
        assert masks == expected, pin
        os.kill(parent.pid, signal.SIGTERM)
        assert parent.wait(timeout=15) == 0
