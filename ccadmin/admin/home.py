"""The admin's home: a marketer's starting point.

The campaigns, the latest changes, and anything that waits for someone or has
gone wrong (imports to confirm or that failed, scheduled changes, saves not
yet live, entries that cannot be published). Operator detail (reconcile and
rebuild reports) lives on the Live metrics page. Every query here is bounded:
no count over the content table.
"""

from __future__ import annotations

from typing import Any

from flask_admin import AdminIndexView, expose
from sqlalchemy import func, select

from ccadmin.admin.audit import describe_actor, describe_target, target_names
from ccadmin.admin.base import AccessControlled
from ccadmin.admin.change_requests import reviewable
from ccadmin.extensions import db
from ccadmin.metrics.system import outbox_backlog
from ccadmin.models import AuditEvent, Campaign, ContentImport, PublishFailure, ScheduledChange
from ccadmin.models.imports import (
    STATUS_APPLYING,
    STATUS_FAILED,
    STATUS_READY,
    STATUS_SCHEDULED,
)
from ccadmin.models.schedule import STATUS_PENDING

RECENT_CHANGES = 8
# Change sets a person should look at: to confirm, running, scheduled or failed.
OPEN_IMPORTS = (STATUS_READY, STATUS_APPLYING, STATUS_SCHEDULED, STATUS_FAILED)
OPEN_IMPORTS_SHOWN = 10


def home_context() -> dict[str, Any]:
    """What the home page shows."""
    campaigns = db.session.scalars(
        select(Campaign).order_by(Campaign.active.desc(), Campaign.slug)
    ).all()
    recent = db.session.scalars(
        select(AuditEvent).order_by(AuditEvent.id.desc()).limit(RECENT_CHANGES)
    ).all()
    open_imports = db.session.scalars(
        select(ContentImport)
        .where(ContentImport.status.in_(OPEN_IMPORTS))
        .order_by(ContentImport.id.desc())
        .limit(OPEN_IMPORTS_SHOWN)
    ).all()
    scheduled = db.session.scalar(
        select(func.count()).where(ScheduledChange.status == STATUS_PENDING)
    )
    set_aside = db.session.scalar(select(func.count()).select_from(PublishFailure))
    names = target_names(recent)
    return {
        "campaigns": campaigns,
        "recent": [
            {
                "event": event,
                "actor": describe_actor(event),
                "target": describe_target(event, names),
            }
            for event in recent
        ],
        "open_imports": open_imports,
        "scheduled_count": scheduled,
        "set_aside_count": set_aside,
        "backlog": outbox_backlog(),
        "reviewable": reviewable(),
    }


class HomeView(AccessControlled, AdminIndexView):
    """The admin's landing page."""

    @expose("/")
    def index(self) -> str:
        return self.render(self._template, **home_context())
