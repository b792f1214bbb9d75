"""Sending tools on the ingest API: Segment batches against content:batch, and a shuffled replay.

Starts the same stack as bench/ingest.py (a private Redis, the admin, one
worker, one API process) against DATABASE_URL, then measures in one run:

- Segment (Actions) batches: --batches requests of 4,000 identify events to
  `/events`, each for new users; the time of each request and events/s;
- the same number of `content:batch` requests of 4,000 NDJSON rows, for
  other new users: the baseline the events endpoint is held to, per event;
- single events (Segment classic: one event a request) against single PUTs,
  sequential on one keep-alive connection, --single-seconds each;
- a shuffled replay: --replay-events events over --replay-users users (each
  user's events a minute apart), shuffled, sent in Segment batches of 1,000
  by --senders concurrent connections; then every user's stored content is
  compared with its newest event, in the database and in what the API
  serves. Older-over-newer results must be zero.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench_tools make bench-tools
"""

from __future__ import annotations

import argparse
import json
import queue
import random
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

from bench.ingest import Client, Stack, create_campaign_and_token, ndjson_rows, wait_idle
from bench.write_load import ApiReader

EVENTS_PER_BATCH = 4_000
START = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--single-seconds", type=float, default=10.0)
    parser.add_argument("--replay-events", type=int, default=100_000)
    parser.add_argument("--replay-users", type=int, default=1_000)
    parser.add_argument("--senders", type=int, default=4)
    return parser.parse_args()


def identify(user_id: str, at: datetime, message: str) -> dict:
    """An identify call as Segment's Webhooks destinations send it."""
    stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "type": "identify",
        "userId": user_id,
        "anonymousId": f"anon-{user_id}",
        "messageId": f"{user_id}-{stamp}",
        "context": {"library": {"name": "analytics-node", "version": "6.2.0"}},
        "traits": {"message": message, "email": f"{user_id}@example.com"},
        "timestamp": stamp,
        "originalTimestamp": stamp,
        "sentAt": stamp,
        "receivedAt": stamp,
        "channel": "server",
        "version": 2,
    }


def post(client: Client, path: str, body: bytes, content_type: str) -> dict:
    status, _, answer = client.call("POST", path, body, content_type)
    if status != 200:
        raise RuntimeError(f"POST {path}: {status} {answer[:300]!r}")
    return json.loads(answer)


def measure_segment_batches(client: Client, slug: str, batches: int) -> list[float]:
    seconds = []
    for _ in range(batches):
        prefix = f"seg{time.monotonic_ns()}"
        events = [identify(f"{prefix}-{n}", START, f"Offer {n}") for n in range(EVENTS_PER_BATCH)]
        body = json.dumps(events).encode()
        started = time.perf_counter()
        answer = post(client, f"/manage/v1/campaigns/{slug}/events", body, "application/json")
        seconds.append(time.perf_counter() - started)
        assert answer["created"] == EVENTS_PER_BATCH, answer["created"]
    return seconds


def timed_rows(prefix: str, count: int) -> bytes:
    """NDJSON rows that carry `$event_time`: the same ordering work as events."""
    stamp = START.isoformat().replace("+00:00", "Z")
    return "".join(
        json.dumps({"user_id": f"{prefix}-{n}", "message": f"Offer {n}", "$event_time": stamp})
        + "\n"
        for n in range(count)
    ).encode()


def measure_row_batches(client: Client, slug: str, batches: int, timed: bool) -> list[float]:
    seconds = []
    for number in range(batches):
        prefix = f"{'timed' if timed else 'rows'}{time.monotonic_ns()}-{number}"
        if timed:
            body = timed_rows(prefix, EVENTS_PER_BATCH)
        else:
            body = ndjson_rows(prefix, 1, EVENTS_PER_BATCH)
        started = time.perf_counter()
        answer = post(
            client, f"/manage/v1/campaigns/{slug}/content:batch", body, "application/x-ndjson"
        )
        seconds.append(time.perf_counter() - started)
        assert answer["created"] == EVENTS_PER_BATCH, answer["created"]
    return seconds


def single_rate(client: Client, request, seconds: float) -> float:
    """Requests/s of `request(n)` (method, path, body) on one connection for `seconds`."""
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        method, path, body = request(done)
        status, _, _ = client.call(method, path, body, "application/json")
        if status not in (200, 201):
            raise RuntimeError(f"{method} {path}: {status}")
        done += 1
    return done / (time.perf_counter() - started)


def replay(port: int, token: str, slug: str, events: int, users: int, senders: int) -> dict:
    """Shuffled, batched, concurrent: what retries and parallel deliveries look like."""
    per_user = events // users
    stream = [
        identify(f"replay-{user}", START + timedelta(minutes=step), f"u{user} step {step}")
        for user in range(users)
        for step in range(per_user)
    ]
    random.Random(20261207).shuffle(stream)
    batches: queue.Queue = queue.Queue()
    for start in range(0, len(stream), 1_000):
        batches.put(json.dumps(stream[start : start + 1_000]).encode())
    totals = {"superseded": 0, "created": 0, "updated": 0, "unchanged": 0, "invalid": 0}
    lock = threading.Lock()
    failures: list[str] = []

    def send() -> None:
        client = Client(port, token)
        while True:
            try:
                body = batches.get_nowait()
            except queue.Empty:
                return
            try:
                answer = post(
                    client, f"/manage/v1/campaigns/{slug}/events", body, "application/json"
                )
            except Exception as error:  # noqa: BLE001 - reported below
                failures.append(str(error))
                return
            with lock:
                for name in totals:
                    totals[name] += answer[name]

    started = time.perf_counter()
    threads = [threading.Thread(target=send) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} senders failed: {failures[0]}")
    newest = {f"replay-{user}": f"u{user} step {per_user - 1}" for user in range(users)}
    return {"seconds": seconds, "totals": totals, "newest": newest}


def stored_messages(slug: str, user_ids: list[str]) -> dict[str, str]:
    from sqlalchemy import select

    from ccadmin.app import create_app
    from ccadmin.extensions import db
    from ccadmin.models import Campaign, ContentEntry

    app = create_app()
    with app.app_context():
        campaign_id = db.session.scalar(select(Campaign.id).where(Campaign.slug == slug))
        rows = db.session.execute(
            select(ContentEntry.user_id, ContentEntry.fields).where(
                ContentEntry.campaign_id == campaign_id, ContentEntry.user_id.in_(user_ids)
            )
        ).all()
        db.engine.dispose()
    return {user_id: fields.get("message") for user_id, fields in rows}


def main() -> None:
    args = parse_args()
    stack = Stack(workers=1)
    try:
        redis_client = stack.start()
        slug = f"tools-{int(time.time())}"
        token, api_key = create_campaign_and_token(slug)
        client = Client(stack.port, token)
        database = stack.env["DATABASE_URL"].split("://", 1)[0]
        print(f"sending-tools benchmark: {database}, campaign {slug}", flush=True)

        # Interleaved, so a slow moment of the machine hits all three alike.
        events: list[float] = []
        rows: list[float] = []
        timed: list[float] = []
        for _ in range(args.batches):
            events += measure_segment_batches(client, slug, 1)
            rows += measure_row_batches(client, slug, 1, timed=False)
            timed += measure_row_batches(client, slug, 1, timed=True)
            wait_idle(redis_client)
        rates = {
            name: EVENTS_PER_BATCH / statistics.median(seconds)
            for name, seconds in (("events", events), ("rows", rows), ("timed", timed))
        }
        for label, seconds, unit in (
            ("Segment batch of 4,000 events", events, "events"),
            ("content:batch of 4,000 rows", rows, "rows"),
            ("... with $event_time per row", timed, "timed"),
        ):
            print(
                f"  {label:<31} median {statistics.median(seconds):.2f} s, "
                f"max {max(seconds):.2f} s ({rates[unit]:,.0f}/s)",
                flush=True,
            )
        print(
            f"  events per event: {rates['events'] / rates['rows']:.2f}x batch rows, "
            f"{rates['events'] / rates['timed']:.2f}x timed batch rows",
            flush=True,
        )

        event_path = f"/manage/v1/campaigns/{slug}/events"
        single_events = single_rate(
            client,
            lambda n: (
                "POST",
                event_path,
                json.dumps(identify(f"single-event-{n}", START, "Hi")).encode(),
            ),
            args.single_seconds,
        )
        single_puts = single_rate(
            client,
            lambda n: (
                "PUT",
                f"/manage/v1/campaigns/{slug}/content/single-put-{n}",
                b'{"fields": {"message": "Hi"}}',
            ),
            args.single_seconds,
        )
        print(
            f"  one event a request: {single_events:,.0f}/s; one PUT a request: "
            f"{single_puts:,.0f}/s ({single_events / single_puts:.2f}x), one connection",
            flush=True,
        )
        wait_idle(redis_client)

        result = replay(
            stack.port, token, slug, args.replay_events, args.replay_users, args.senders
        )
        wait_idle(redis_client)
        newest = result["newest"]
        stored = stored_messages(slug, list(newest))
        older_in_database = sum(stored.get(user) != message for user, message in newest.items())
        reader = ApiReader(stack.api_port, api_key)
        served = {user: reader.message(slug, user) for user in newest}
        older_served = sum(served[user] != message for user, message in newest.items())
        totals = result["totals"]
        print(
            f"  shuffled replay: {args.replay_events:,} events over {args.replay_users:,} users, "
            f"{args.senders} senders, batches of 1,000: {result['seconds']:.1f} s "
            f"({args.replay_events / result['seconds']:,.0f} events/s)\n"
            f"    superseded {totals['superseded']:,}, created {totals['created']:,}, "
            f"updated {totals['updated']:,}, unchanged {totals['unchanged']:,}, "
            f"invalid {totals['invalid']:,}\n"
            f"    older-over-newer: {older_in_database} in the database, "
            f"{older_served} served by the API",
            flush=True,
        )
        if older_in_database or older_served:
            sys.exit(1)
    except Exception:
        print(stack.log_tail(), file=sys.stderr)
        raise
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
