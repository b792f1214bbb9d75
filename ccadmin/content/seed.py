"""Bulk seeding of a campaign's content, through the outbox like any edit.

Each batch is one transaction: the upserted rows, one outbox event pointing
at them (content_entry.last_event_id) and one audit event; the commit wakes
the drainers. PostgreSQL loads a batch with COPY into a temporary
table and one INSERT ... ON CONFLICT; SQLite gets a batched executemany.
"""

from __future__ import annotations

import io
import os
import string
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ccadmin import publishing
from ccadmin.extensions import db
from ccadmin.models import Campaign, ContentEntry
from ccadmin.models.campaign import DEFAULT_FIELD_SCHEMA, SLUG_PATTERN
from ccadmin.models.types import utcnow

DEFAULT_BATCH_SIZE = 10_000
MESSAGE_LENGTH = 140
SEED_ACTOR = "seed"

# Letters, digits and spaces: nothing JSON or COPY would need to escape, so
# rows are formatted directly instead of through json.dumps per row.
_ALPHABET = (string.ascii_letters + string.digits + "  ").encode("ascii")
_BYTE_TO_CHARACTER = bytes(_ALPHABET[byte % len(_ALPHABET)] for byte in range(256))

_UPSERT_FROM_STAGING = """
INSERT INTO content_entry
    (campaign_id, user_id, fields, version, deleted, updated_at, updated_by, last_event_id)
SELECT %(campaign_id)s, user_id, fields::jsonb, 1, false, now(), %(actor)s, %(event_id)s
FROM seed_content
ON CONFLICT (campaign_id, user_id) DO UPDATE SET
    fields = EXCLUDED.fields,
    version = content_entry.version + 1,
    deleted = false,
    updated_at = EXCLUDED.updated_at,
    updated_by = EXCLUDED.updated_by,
    last_event_id = EXCLUDED.last_event_id
"""


class SeedError(ValueError):
    """The seed request is invalid; the message says why."""


@dataclass
class SeedReport:
    """What a seed run did."""

    campaign: str
    users: int
    batches: int
    campaign_created: bool


# Demo content that reads like a real campaign's. Letters, digits and plain
# punctuation only: nothing JSON or COPY would need to escape (see _ALPHABET).
_NAMES = (
    "Maya",
    "Leo",
    "Amara",
    "Noah",
    "Sofia",
    "Kenji",
    "Chloe",
    "Mateo",
    "Aisha",
    "Finn",
    "Priya",
    "Lucas",
    "Zoe",
    "Omar",
    "Elena",
    "Jonas",
    "Ines",
    "Ravi",
    "Hannah",
    "Diego",
)
_OFFERS = (
    "20% off running shoes this weekend",
    "free shipping on your next order",
    "your spring picks are back in stock",
    "2 for 1 on summer dresses until Sunday",
    "a free coffee with any breakfast today",
    "early access to the winter sale",
    "15% off the jacket you looked at",
    "double points on orders over 50 EUR",
)


def demo_messages(first: int, count: int) -> list[str]:
    """Messages for users `first`..: a name, an offer and a code, like a real campaign's."""
    return [
        f"Hi {_NAMES[number % len(_NAMES)]}, {_OFFERS[number % len(_OFFERS)]}. "
        f"Code SPRING{number:06d}"
        for number in range(first, first + count)
    ]


def random_messages(count: int, length: int = MESSAGE_LENGTH) -> list[str]:
    """`count` random messages of `length` characters (letters, digits, spaces)."""
    text = os.urandom(count * length).translate(_BYTE_TO_CHARACTER).decode("ascii")
    return [text[start : start + length] for start in range(0, count * length, length)]


def ensure_campaign(slug: str, actor: str = SEED_ACTOR) -> tuple[Campaign, bool]:
    """The campaign `slug`, created with the default schema if missing, and
    flagged as the one `/data` serves when no campaign is; commits."""
    if not SLUG_PATTERN.match(slug):
        raise SeedError(
            f"{slug!r} is not a valid campaign slug (lowercase letters, digits, - and _)"
        )
    campaign = db.session.execute(select(Campaign).where(Campaign.slug == slug)).scalar()
    created = campaign is None
    if created:
        campaign = Campaign(
            slug=slug,
            name=slug.replace("-", " ").replace("_", " ").title(),
            field_schema=list(DEFAULT_FIELD_SCHEMA),
            default_fields={"message": ""},
            version=1,
        )
        db.session.add(campaign)
        db.session.flush()
    has_default = db.session.execute(
        select(Campaign.id).where(Campaign.is_default.is_(True))
    ).first()
    flagged = has_default is None
    if flagged:
        campaign.is_default = True
        if not created:
            campaign.version += 1
            campaign.updated_at = utcnow()
    if created or flagged:
        db.session.flush()
        publishing.record_campaign_change(campaign.id)
        publishing.record_audit(
            actor,
            "create" if created else "update",
            "campaign",
            campaign.id,
            after={"slug": campaign.slug, "is_default": campaign.is_default},
        )
    db.session.commit()
    return campaign, created


def seed_content(
    slug: str,
    users: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    actor: str = SEED_ACTOR,
    progress: Callable[[int], None] | None = None,
) -> SeedReport:
    """Upsert users `1`..`users` with demo messages into campaign `slug`.

    A user that already exists gets a new version. One commit per batch, so
    each batch's outbox event goes out while the next one is loading.
    """
    if users < 1 or batch_size < 1:
        raise SeedError("--users and --batch-size must be at least 1")
    campaign, created = ensure_campaign(slug, actor)
    campaign_id = campaign.id
    postgresql = db.engine.dialect.name == "postgresql"
    batches = 0
    for first in range(1, users + 1, batch_size):
        last = min(first + batch_size - 1, users)
        user_ids = [str(number) for number in range(first, last + 1)]
        messages = demo_messages(first, len(user_ids))
        outbox_event = publishing.record_content_batch(campaign_id, len(user_ids))
        if postgresql:
            _upsert_postgresql(campaign_id, outbox_event.id, actor, user_ids, messages)
        else:
            _upsert_batched(campaign_id, outbox_event.id, actor, user_ids, messages)
        publishing.record_audit(
            actor,
            "seed",
            "campaign",
            campaign_id,
            after={"users": f"{first}-{last}", "outbox_event": outbox_event.id},
        )
        db.session.commit()
        batches += 1
        if progress is not None:
            progress(len(user_ids))
    if postgresql:
        # Fresh planner statistics: without them the first queries after a
        # large load (reconcile's lookups, the admin's search) pick slow plans.
        db.session.execute(text("ANALYZE content_entry"))
        db.session.commit()
    return SeedReport(campaign=slug, users=users, batches=batches, campaign_created=created)


def _upsert_postgresql(
    campaign_id: int, event_id: int, actor: str, user_ids: list[str], messages: list[str]
) -> None:
    # The raw psycopg2 connection of the session's own transaction, so the
    # rows commit (or roll back) together with the outbox event.
    driver_connection = db.session.connection().connection.driver_connection
    rows = io.StringIO(
        "".join(
            f'{user_id}\t{{"message": "{message}"}}\n'
            for user_id, message in zip(user_ids, messages, strict=True)
        )
    )
    with driver_connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS seed_content (user_id text, fields text) "
            "ON COMMIT DELETE ROWS"
        )
        cursor.copy_expert("COPY seed_content (user_id, fields) FROM STDIN", rows)
        cursor.execute(
            _UPSERT_FROM_STAGING,
            {"campaign_id": campaign_id, "actor": actor, "event_id": event_id},
        )


def _upsert_batched(
    campaign_id: int, event_id: int, actor: str, user_ids: list[str], messages: list[str]
) -> None:
    table = ContentEntry.__table__
    now = utcnow()
    statement = sqlite_insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.campaign_id, table.c.user_id],
        set_={
            "fields": statement.excluded.fields,
            "version": table.c.version + 1,
            "deleted": False,
            "updated_at": statement.excluded.updated_at,
            "updated_by": statement.excluded.updated_by,
            "last_event_id": statement.excluded.last_event_id,
        },
    )
    db.session.execute(
        statement,
        [
            {
                "campaign_id": campaign_id,
                "user_id": user_id,
                "fields": {"message": message},
                "version": 1,
                "deleted": False,
                "updated_at": now,
                "updated_by": actor,
                "last_event_id": event_id,
            }
            for user_id, message in zip(user_ids, messages, strict=True)
        ],
    )
