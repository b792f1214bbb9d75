"""The audit log: who changed what and when, read-only for everyone logged in.

Rows name what they changed as people know it ("user 42 in spring", "campaign
spring", "import #7 into spring") and say what made a change when no person
typed it ("scheduled change #12, set by ana@..."); a row's page shows the
change as a diff. The names of a page's entries and campaigns are read in one
query each (`target_names`).
"""

from __future__ import annotations

import json
from typing import Any

from flask import g, url_for
from flask_admin.contrib.sqla.filters import DateTimeBetweenFilter, FilterEqual
from markupsafe import Markup
from sqlalchemy import select

from ccadmin.admin.keyset import KeysetModelView
from ccadmin.extensions import db
from ccadmin.models import AuditEvent, Campaign, ContentEntry
from ccadmin.publishing.audit import AUDIT_VIA

_CHANGE_ROW = Markup("<tr><th scope='row'>{}</th><td><del>{}</del></td><td><ins>{}</ins></td></tr>")
_IMPORT_ACTIONS = {"import", "rollback", "roll_forward", "revert"}


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def changes(before: dict | None, after: dict | None) -> list[tuple[str, str, str]]:
    """(what, before, after) for every value that differs; an entry's fields one by one."""
    before, after = before or {}, after or {}
    rows = []
    for name in list(after) + [name for name in before if name not in after]:
        old, new = before.get(name), after.get(name)
        if name == "fields" and isinstance(old or {}, dict) and isinstance(new or {}, dict):
            rows += [(f"field {what}", was, now) for what, was, now in changes(old, new)]
        elif old != new:
            rows.append((name, _text(old), _text(new)))
    return rows


def _format_changes(view: Any, context: Any, model: AuditEvent, name: str) -> Markup:
    rows = changes(model.before, model.after)
    if not rows:
        return Markup("<p>Nothing changed.</p>")
    body = Markup("").join(_CHANGE_ROW.format(what, was, now) for what, was, now in rows)
    return Markup(
        '<table class="table table-sm table-bordered" id="audit-changes">'
        "<thead><tr><th scope='col'>What</th><th scope='col'>Before</th>"
        "<th scope='col'>After</th></tr></thead><tbody>{}</tbody></table>"
    ).format(body)


Names = tuple[dict[str, tuple[str, str]], dict[str, str]]


def target_names(rows: list[AuditEvent]) -> Names:
    """(entry id -> (user id, campaign slug), campaign id -> slug) of these rows' targets."""
    entry_ids = [int(row.target_id) for row in rows if _is_id(row, "content_entry")]
    campaign_ids = [int(row.target_id) for row in rows if _is_id(row, "campaign")]
    entries = db.session.execute(
        select(ContentEntry.id, ContentEntry.user_id, Campaign.slug)
        .join(Campaign, Campaign.id == ContentEntry.campaign_id)
        .where(ContentEntry.id.in_(entry_ids))
    )
    campaigns = db.session.execute(
        select(Campaign.id, Campaign.slug).where(Campaign.id.in_(campaign_ids))
    )
    return (
        {str(entry_id): (user_id, slug) for entry_id, user_id, slug in entries},
        {str(campaign_id): slug for campaign_id, slug in campaigns},
    )


def _listed_names(model: AuditEvent) -> Names:
    """The names of the listed page's targets, read once (of `model` alone on its page)."""
    if "ccadmin_audit_names" not in g:
        g.ccadmin_audit_names = target_names(g.keyset_page.rows if "keyset_page" in g else [model])
    return g.ccadmin_audit_names


def _is_id(row: AuditEvent, target_type: str) -> bool:
    return row.target_type == target_type and (row.target_id or "").isdigit()


def describe_target(model: AuditEvent, names: Names) -> Markup:
    """What the row changed, as people know it, linked where it still exists."""
    snapshot = model.after or model.before or {}
    entries, campaigns = names
    if model.target_type == "content_entry" and model.target_id in entries:
        user_id, slug = entries[model.target_id]
        link = url_for("content.details_view", id=model.target_id)
        return Markup('<a href="{}">user {}</a> in {}').format(link, user_id, slug)
    if model.target_type == "content_entry":
        return Markup("user {}").format(snapshot.get("user_id", model.target_id))
    if model.target_type == "campaign":
        slug = campaigns.get(model.target_id or "") or snapshot.get("slug") or model.target_id
        if model.action in _IMPORT_ACTIONS and "import_id" in snapshot:
            link = url_for("imports.detail_view", import_id=snapshot["import_id"])
            return Markup('<a href="{}">{} #{}</a> into {}').format(
                link, model.action.replace("_", " "), snapshot["import_id"], slug
            )
        return Markup("campaign {}").format(slug)
    if model.target_type == "change_request" and (model.target_id or "").isdigit():
        link = url_for("change_requests.details_view", id=model.target_id)
        return Markup('<a href="{}">change request #{}</a>: {}').format(
            link, model.target_id, snapshot.get("title", "")
        )
    label = snapshot.get("email") or snapshot.get("name")
    kind = model.target_type.replace("_", " ")
    if label:
        return Markup("{} {}").format(kind, label)
    return Markup("{} {}").format(kind, model.target_id or "")


def describe_actor(model: AuditEvent) -> str:
    """Who made the change, and what made it for them."""
    via = (model.after or {}).get(AUDIT_VIA) if isinstance(model.after, dict) else None
    return f"{via}, set by {model.actor}" if via else model.actor


class AuditView(KeysetModelView):
    """Append-only history; no role may write through the admin."""

    write_role = None
    record_noun = "audit events"
    allow_create = False
    allow_edit = False
    allow_delete = False
    can_view_details = True
    column_list = ("at", "actor", "action", "target", "client_ip")
    column_details_list = ("at", "actor", "action", "target", "client_ip", "changes")
    column_labels = {"at": "When", "client_ip": "From address"}
    column_formatters = {
        "actor": lambda view, context, model, name: describe_actor(model),
        "action": lambda view, context, model, name: model.action.replace("_", " "),
        "target": lambda view, context, model, name: describe_target(model, _listed_names(model)),
        "changes": _format_changes,
    }
    column_filters = (
        FilterEqual(AuditEvent.actor, "Actor"),
        FilterEqual(AuditEvent.action, "Action"),
        FilterEqual(AuditEvent.target_type, "Target"),
        DateTimeBetweenFilter(AuditEvent.at, "When (UTC)"),
    )
    column_sortable_list = ("at",)
    # Ids grow with time, and the primary key index serves this order.
    column_default_sort = ("id", True)
