"""Writes that wait for approval: a token marked as needing it, on a campaign whose changes
need approval, opens a change request instead of writing, and gets 202 with its address.

The request is checked as the write would be (schema, preconditions, event
times), then decided by a person in the admin (ccadmin/approvals/). The
request's address here tells the sending system what became of it.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from ccadmin.approvals import workflow
from ccadmin.extensions import db
from ccadmin.manage import token_auth
from ccadmin.manage.errors import Accepted, ApiError
from ccadmin.manage.routes import operation
from ccadmin.models import Campaign, ChangeRequest


def needed(campaign: Campaign) -> bool:
    """Whether this request's writes to `campaign` wait for approval."""
    return workflow.needs_approval(campaign) and bool(token_auth.token().needs_approval)


def via() -> str:
    return f"api:{token_auth.token().name}"


def ask(campaign: Campaign, changes: list[workflow.EntryChange], **extra: Any) -> None:
    """Open (and commit) a request for these entry changes; raises Accepted (202).

    A retry of a write whose request is still open gets that request back.
    `extra` joins the answer (a batch's invalid rows, say).
    """
    change_request = workflow.same_open_request(campaign, changes, token_auth.actor())
    if change_request is None:
        change_request = workflow.open_entries(campaign, changes, token_auth.actor(), via())
    db.session.commit()
    raise Accepted({**document(change_request), **extra}, location(change_request))


def location(change_request: ChangeRequest) -> str:
    return url_for("manage.get_change_request", request_id=change_request.id)


def document(change_request: ChangeRequest) -> dict[str, Any]:
    """What the API shows of a change request."""
    return {
        "id": change_request.id,
        "campaign": change_request.campaign.slug,
        "kind": change_request.kind,
        "title": change_request.title,
        "status": change_request.status,
        "entries": change_request.entry_count,
        "requested_by": change_request.requested_by,
        "requested_at": change_request.requested_at.isoformat(),
        "decided_by": change_request.decided_by,
        "decided_at": change_request.decided_at.isoformat() if change_request.decided_at else None,
        "result": change_request.result,
        "url": location(change_request),
        "review_url": url_for("change_requests.details_view", id=change_request.id, _external=True),
    }


@operation(
    "/change-requests/<int:request_id>",
    "GET",
    summary="A change request's status: open, applied, rejected or withdrawn",
    description=(
        "Writes with a token that needs approval, to a campaign whose changes need approval, "
        "answer 202 with a change request instead of writing. Poll its address to see it "
        "decided; an applied request's `result` names the versions written."
    ),
    responses={200: ("The change request", "ChangeRequest")},
)
def get_change_request(request_id: int) -> Response:
    change_request = db.session.scalars(
        select(ChangeRequest).where(ChangeRequest.id == request_id)
    ).first()
    if change_request is None or not token_auth.token().allows(change_request.campaign.slug):
        raise ApiError(404, "change_request_not_found", "There is no change request with this id.")
    response = jsonify(document(change_request))
    response.headers["Cache-Control"] = "no-store"
    return response
