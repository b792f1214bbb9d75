"""The audit log: who changed what and when, read-only for everyone logged in."""

from __future__ import annotations

import json
from typing import Any

from flask_admin.contrib.sqla.filters import FilterEqual
from markupsafe import Markup

from ccadmin.admin.keyset import KeysetModelView
from ccadmin.models import AuditEvent


def _pretty_json(view: Any, context: Any, model: AuditEvent, name: str) -> Markup:
    document = getattr(model, name)
    if document is None:
        return Markup("")
    # Markup.format escapes its arguments: the JSON is shown, never interpreted.
    return Markup("<pre>{}</pre>").format(
        json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True)
    )


class AuditView(KeysetModelView):
    """Append-only history; no role may write through the admin."""

    write_role = None
    allow_create = False
    allow_edit = False
    allow_delete = False
    can_view_details = True
    column_list = ("at", "actor", "action", "target_type", "target_id", "client_ip")
    column_details_list = (*column_list, "before", "after")
    column_labels = {"at": "When", "target_type": "Target", "target_id": "Target id"}
    column_formatters = {"before": _pretty_json, "after": _pretty_json}
    column_filters = (
        FilterEqual(AuditEvent.actor, "Actor"),
        FilterEqual(AuditEvent.action, "Action"),
        FilterEqual(AuditEvent.target_type, "Target"),
    )
    column_sortable_list = ()
    # Ids grow with time, and the primary key index serves this order.
    column_default_sort = ("id", True)
