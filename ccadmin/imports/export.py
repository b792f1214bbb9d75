"""A campaign's content as CSV, streamed in constant memory, in the columns import reads.

Rows are read by keyset pagination on the primary key, so each query costs
the same however far the export has gone; deleted entries (tombstones) are
left out. Cells a spreadsheet would run as formulas are guarded
(imports/spreadsheet.py). Importing the file unchanged changes nothing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from sqlalchemy import select

from ccadmin.extensions import db
from ccadmin.imports.parsing import USER_ID_COLUMN
from ccadmin.imports.spreadsheet import guarded
from ccadmin.models import Campaign, ContentEntry

EXPORT_CHUNK = 5_000

content_columns = ContentEntry.__table__.c


def export_filename(campaign: Campaign) -> str:
    """The download's file name."""
    return f"{campaign.slug}-content.csv"


def export_csv(campaign_id: int, field_names: list[str]) -> Iterator[str]:
    """The header, then one CSV text chunk per EXPORT_CHUNK entries."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([USER_ID_COLUMN, *field_names])
    yield buffer.getvalue()
    last_id = 0
    while True:
        rows = db.session.execute(
            select(content_columns.id, content_columns.user_id, content_columns.fields)
            .where(
                content_columns.campaign_id == campaign_id,
                content_columns.deleted.is_(False),
                content_columns.id > last_id,
            )
            .order_by(content_columns.id)
            .limit(EXPORT_CHUNK)
        ).all()
        # Each chunk reads in its own short transaction: a long download must
        # not hold one open (and pin old row versions) for its whole length.
        db.session.rollback()
        if not rows:
            return
        buffer.seek(0)
        buffer.truncate()
        for row in rows:
            fields = row.fields or {}
            cells = [row.user_id, *(fields.get(name, "") for name in field_names)]
            writer.writerow([guarded(cell) for cell in cells])
        yield buffer.getvalue()
        last_id = rows[-1].id
