"""Change requests in the admin: the list with filters, a request's diff and comments,
and approving, rejecting, withdrawing and refreshing it.

Everyone logged in reads; editors and admins comment and decide (a viewer's
POST is refused and audited by admin/base.py). The menu shows reviewers how
many open requests wait for someone other than their author.
"""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, g, redirect, request, url_for
from flask_admin import expose
from flask_admin.contrib.sqla.filters import FilterEqual, IntEqualFilter
from flask_admin.menu import MenuView
from flask_login import current_user
from markupsafe import Markup
from werkzeug.wrappers import Response

from ccadmin.admin.base import ProtectedModelView, actor
from ccadmin.admin.content_list import CampaignOptions
from ccadmin.approvals import workflow
from ccadmin.extensions import db
from ccadmin.imports.staging import field_changes
from ccadmin.models import ChangeRequest
from ccadmin.models.change_requests import STATUSES
from ccadmin.models.users import ROLE_EDITOR
from ccadmin.redis_client import get_redis

_STATUS_BADGES = {
    "open": "badge-warning",
    "applied": "badge-success",
    "rejected": "badge-danger",
    "withdrawn": "badge-secondary",
}


def status_badge(change_request: ChangeRequest) -> str:
    """The Bootstrap badge class of a request's status, in the list and on its page."""
    return _STATUS_BADGES.get(change_request.status, "badge-secondary")


def _format_status(view: Any, context: Any, model: ChangeRequest, name: str) -> Markup:
    return Markup('<span class="badge {}">{}</span>').format(status_badge(model), model.status)


def _format_campaign(view: Any, context: Any, model: ChangeRequest, name: str) -> str:
    return model.campaign.slug


class ReviewMenu(MenuView):
    """The menu item, with a badge counting the open requests this user may decide."""

    @property
    def name(self) -> str | Markup:
        count = reviewable()
        if not count:
            return self._label
        return Markup(
            '{} <span class="badge badge-warning" id="review-badge" title="{}">{}</span>'
        ).format(self._label, f"{count} open change requests wait for a reviewer", count)

    @name.setter
    def name(self, value: str) -> None:
        self._label = value


def reviewable() -> int:
    if not current_user.is_authenticated or not current_user.has_role(ROLE_EDITOR):
        return 0
    cached = g.get("ccadmin_reviewable")
    if cached is None or cached[0] != current_user.email:
        g.ccadmin_reviewable = cached = (
            current_user.email,
            workflow.open_for_review(current_user.email),
        )
    return cached[1]


def entry_diffs(change_request: ChangeRequest) -> list[dict[str, Any]]:
    """Per entry: who, what, and the field-by-field changes the request makes."""
    shown = []
    for change in change_request.changes or []:
        before = change.get("before") or {}
        after = {} if change["action"] == workflow.ACTION_DELETE else change["fields"]
        shown.append({**change, "diff": field_changes(before, after)})
    return shown


def sample_diffs(change_request: ChangeRequest) -> list[dict[str, Any]]:
    """The change set's sample rows, as entry diffs."""
    return [
        {**row, "diff": field_changes(row.get("before") or {}, row.get("fields") or {})}
        for row in (change_request.details or {}).get("sample", [])
    ]


class ChangeRequestView(ProtectedModelView):
    """Read by everyone, decided by editors and admins other than the author."""

    write_role = ROLE_EDITOR
    allow_create = False
    allow_edit = False
    allow_delete = False
    can_view_details = True
    record_noun = "change requests"
    details_template = "admin/change_requests/details.html"
    column_list = (
        "id",
        "title",
        "campaign",
        "status",
        "requested_by",
        "requested_at",
        "decided_by",
        "decided_at",
    )
    column_labels = {"id": "#", "requested_at": "Asked", "decided_at": "Decided"}
    column_formatters = {"status": _format_status, "campaign": _format_campaign}
    column_sortable_list = ("id", "requested_at", "decided_at")
    column_default_sort = ("id", True)
    column_searchable_list = ("title",)
    column_filters = (
        FilterEqual(ChangeRequest.status, "Status", options=[(s, s) for s in STATUSES]),
        IntEqualFilter(ChangeRequest.campaign_id, "Campaign", options=CampaignOptions()),
        FilterEqual(ChangeRequest.requested_by, "Asked by"),
        FilterEqual(ChangeRequest.decided_by, "Decided by"),
    )

    def render(self, template: str, **kwargs: Any) -> str:
        if template == self.details_template and kwargs.get("model") is not None:
            change_request = kwargs["model"]
            kwargs["entries"] = entry_diffs(change_request)
            kwargs["sample"] = sample_diffs(change_request)
            kwargs["conflicts"] = self._conflicts(change_request)
            kwargs["own"] = change_request.requested_by == actor()
            kwargs["can_decide"] = self.user_can_write() and not kwargs["own"]
            kwargs["status_badge"] = status_badge(change_request)
        return super().render(template, **kwargs)

    @staticmethod
    def _conflicts(change_request: ChangeRequest) -> list[str] | str:
        if not change_request.is_open:
            return []
        try:
            return workflow.conflicts(change_request)
        except workflow.ApprovalError as error:
            return str(error)

    def _load(self, request_id: int) -> ChangeRequest:
        change_request = self.get_one(str(request_id))
        if change_request is None:
            abort(404)
        return change_request

    def _back(self, change_request: ChangeRequest) -> Response:
        return redirect(self.get_url(".details_view", id=change_request.id))

    @expose("/<int:request_id>/approve", methods=("POST",))
    def approve_view(self, request_id: int) -> Response:
        """Apply the request now, unless its entries moved (then it must be refreshed)."""
        change_request = self._load(request_id)
        connection = get_redis(current_app.config["CCADMIN_SETTINGS"])
        return self._decide(
            change_request,
            lambda: workflow.approve(change_request, actor(), connection),
            f"Change request #{request_id} approved and applied.",
        )

    @expose("/<int:request_id>/reject", methods=("POST",))
    def reject_view(self, request_id: int) -> Response:
        change_request = self._load(request_id)
        return self._decide(
            change_request,
            lambda: workflow.reject(change_request, actor(), request.form.get("reason", "")),
            f"Change request #{request_id} rejected; nothing was applied.",
        )

    @expose("/<int:request_id>/withdraw", methods=("POST",))
    def withdraw_view(self, request_id: int) -> Response:
        change_request = self._load(request_id)
        return self._decide(
            change_request,
            lambda: workflow.withdraw(change_request, actor()),
            f"Change request #{request_id} withdrawn; nothing was applied.",
        )

    @expose("/<int:request_id>/refresh", methods=("POST",))
    def refresh_view(self, request_id: int) -> Response:
        change_request = self._load(request_id)
        return self._decide(
            change_request,
            lambda: workflow.refresh(change_request, actor()),
            "The request's diff is taken again against the entries as they are now.",
        )

    @expose("/<int:request_id>/comment", methods=("POST",))
    def comment_view(self, request_id: int) -> Response:
        change_request = self._load(request_id)
        return self._decide(
            change_request,
            lambda: workflow.add_comment(change_request, actor(), request.form.get("body", "")),
            "Comment added.",
        )

    def _decide(self, change_request: ChangeRequest, step: Any, done: str) -> Response:
        try:
            step()
            db.session.commit()
        except workflow.ApprovalError as error:
            db.session.rollback()
            flash(str(error), "error")
        else:
            flash(done, "success")
        return self._back(change_request)


class RequestOpened(Exception):
    """A change that became a change request: raised from deep in a save, answered by
    sending its author to the request (registered in admin/__init__.py)."""

    def __init__(self, change_request: ChangeRequest) -> None:
        super().__init__(change_request.id)
        self.change_request = change_request


def to_request(change_request: ChangeRequest) -> Response:
    """Where a change that became a request sends its author: the request's page."""
    flash(
        f"This campaign's changes need approval: change request #{change_request.id} is open. "
        "It goes live when someone else approves it.",
        "info",
    )
    return redirect(url_for("change_requests.details_view", id=change_request.id))
