"""The admin's content list at volume: pages, sorts, search and filters, timed.

Seeds --entries entries (default 2,000,000) into the PostgreSQL database at
DATABASE_URL once (later runs reuse them), then times each list request
through the admin app itself (Flask's test client, a signed-in viewer), the
median of --repeat requests: the first page and the last page of each sort
(keyset: the page after a cursor near the end), a text search for a rare
and for a common word, an exact user id, and each filter. The baseline, in
the same run, is what OFFSET paging costs for the same last page.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench_list \\
        .venv/bin/python -m bench.content_list
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CAMPAIGN = "bench-list"
AUTHORS = ("ana@example.com", "ben@example.com", "crm-sync", "import", "bench")
# One entry in RARE_EVERY mentions the rare offer; every message has the common word.
RARE_EVERY = 5_000
_INSERT = """
INSERT INTO content_entry
    (campaign_id, user_id, fields, version, deleted, updated_at, updated_by, last_event_id)
SELECT :campaign_id, 'user-' || n,
       jsonb_build_object(
           'message', CASE WHEN n % :rare = 0 THEN 'Black Friday: 40% off everything, '
                           ELSE 'Your weekly picks, ' END || 'code SPRING' || n,
           'image_url', 'https://cdn.example.com/offers/' || (n % 97) || '.png'),
       1 + n % 7, false, now() - n * interval '1 second',
       (ARRAY['ana@example.com','ben@example.com','crm-sync','import','bench'])[1 + n % 5],
       NULL
FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS n
"""
SEED_BATCH = 200_000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    return parser.parse_args()


def seed(entries: int) -> None:
    """The bench campaign with `entries` entries (added if fewer), analyzed."""
    from sqlalchemy import func, select, text

    from ccadmin.content.seed import ensure_campaign
    from ccadmin.extensions import db
    from ccadmin.models import ContentEntry

    campaign, _ = ensure_campaign(CAMPAIGN, actor="bench")
    have = db.session.scalar(select(func.count()).where(ContentEntry.campaign_id == campaign.id))
    started = time.monotonic()
    for first in range(have + 1, entries + 1, SEED_BATCH):
        last = min(first + SEED_BATCH - 1, entries)
        db.session.execute(
            text(_INSERT),
            {"campaign_id": campaign.id, "rare": RARE_EVERY, "first": first, "last": last},
        )
        db.session.commit()
        print(f"  seeded {last:,} entries ({time.monotonic() - started:.0f} s)", flush=True)
    if have < entries:
        db.session.execute(text("ANALYZE content_entry"))
        db.session.commit()


def viewer_client(app):
    from ccadmin.extensions import db
    from ccadmin.models import AdminUser

    email = "bench-viewer@example.com"
    password = secrets.token_urlsafe(16)
    user = db.session.query(AdminUser).filter_by(email=email).first()
    if user is None:
        user = AdminUser(email=email, role="viewer")
        db.session.add(user)
    user.set_password(password)
    db.session.commit()
    client = app.test_client()
    login = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', login).group(1)
    answer = client.post("/login", data={"email": email, "password": password, "csrf_token": token})
    if answer.status_code != 302:
        raise RuntimeError("the bench viewer could not sign in")
    return client


def timed(client, url: str, repeat: int) -> tuple[float, str]:
    """Median milliseconds of `repeat` GETs of `url`, and what the page says it shows."""
    times, shown = [], ""
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}")
        found = re.search(r'id="list-position">(.*?)</p>', response.get_data(as_text=True), re.S)
        shown = " ".join(found.group(1).split()) if found else "?"
    return statistics.median(times), shown


def last_page_url(view, sort: int | None, descending: bool) -> str:
    """The list URL of the last page of a sort: the page after the row 50 from the end."""
    from ccadmin.admin.keyset import AFTER
    from ccadmin.extensions import db

    key = view.sort_key(view.column_list[sort] if sort is not None else None, descending)
    query = db.session.query(view.model).filter(view.model.deleted.is_(False))
    row = query.order_by(*key.order(reverse=True)).offset(50).first()
    args = {"sort": sort, "desc": 1 if descending else None, AFTER: key.cursor(row)}
    return "/admin/content/?" + urlencode({k: v for k, v in args.items() if v is not None})


def offset_baseline(repeat: int) -> float:
    """Milliseconds of the last page by OFFSET, as Flask-Admin pages (the default order)."""
    from sqlalchemy import text

    from ccadmin.extensions import db

    total = db.session.scalar(text("SELECT count(*) FROM content_entry WHERE NOT deleted"))
    statement = text(
        "SELECT * FROM content_entry WHERE NOT deleted "
        "ORDER BY updated_at DESC, id DESC LIMIT 50 OFFSET :skip"
    )
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        db.session.execute(statement, {"skip": max(0, total - 50)}).all()
        times.append((time.perf_counter() - started) * 1000)
    db.session.rollback()
    return statistics.median(times)


def main() -> None:
    args = parse_args()
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(32))
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("bench.content_list needs DATABASE_URL pointing at PostgreSQL")
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=PROJECT_ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    from ccadmin.app import create_app

    app = create_app()
    with app.app_context():
        seed(args.entries)
        client = viewer_client(app)
        view = next(v for v in app.extensions["admin"][0]._views if v.endpoint == "content")
        columns = view.column_list
        rows: list[tuple[str, str]] = [
            ("first page (latest change first)", "/admin/content/"),
            ("last page (latest change first)", last_page_url(view, None, True)),
        ]
        for name in ("version", "user_id"):
            index = columns.index(name)
            rows.append((f"sorted by {name}, first page", f"/admin/content/?sort={index}&desc=1"))
            rows.append((f"sorted by {name}, last page", last_page_url(view, index, True)))
        rows += [
            ("search: rare words ('black friday')", "/admin/content/?search=black+friday"),
            ("search: a word in every entry ('weekly')", "/admin/content/?search=weekly"),
            ("search: exact user id", "/admin/content/?search=user-1234567"),
            ("filter: waiting to publish", "/admin/content/?flt0_1=waiting"),
            ("filter: changed by ana@example.com", "/admin/content/?flt0_2=ana%40example.com"),
            (
                "filter: changed in one hour, a day ago",
                "/admin/content/?" + urlencode({"flt0_3": day_ago_hour()}),
            ),
        ]
        print(f"content list, {args.entries:,} entries, median of {args.repeat}:")
        for label, url in rows:
            milliseconds, shown = timed(client, url, args.repeat)
            print(f"  {label:<40} {milliseconds:8.1f} ms  ({shown})", flush=True)
        print(
            f"  {'baseline: last page by OFFSET (SQL only)':<40} "
            f"{offset_baseline(args.repeat):8.1f} ms"
        )


def day_ago_hour() -> str:
    from datetime import UTC, datetime, timedelta

    end = datetime.now(UTC) - timedelta(days=1)
    start = end - timedelta(hours=1)
    return f"{start:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S}"


if __name__ == "__main__":
    main()
