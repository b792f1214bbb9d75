"""Campaign endpoints: which campaigns a token sees, their fields, fallback and counts."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from sqlalchemy import func, select, text
from werkzeug.wrappers import Response

from ccadmin.extensions import db
from ccadmin.imports import bulk
from ccadmin.manage import token_auth
from ccadmin.manage.errors import ApiError
from ccadmin.manage.routes import operation
from ccadmin.models import Campaign, ContentEntry

# Above this many rows an exact count costs a scan; PostgreSQL's estimate is used instead.
EXACT_COUNT_LIMIT = 100_000
SLUG_PARAMETER = {
    "name": "slug",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "maxLength": 63},
    "description": "The campaign's slug (its URL on the endpoint: `/v1/<slug>`).",
}


def campaign_for(slug: str, write: bool = False) -> Campaign:
    """The campaign this token may use (403 outside its scope, 404 when missing)."""
    token_auth.require_campaign_scope(slug)
    if write:
        token_auth.require_write()
    campaign = token_auth.campaign()
    if campaign is None or campaign.slug != slug:
        campaign = db.session.scalars(select(Campaign).where(Campaign.slug == slug)).first()
    if campaign is None:
        raise ApiError(404, "campaign_not_found", f"There is no campaign {slug!r}.")
    return campaign


def connection_test(rule: str, operation_id: str) -> None:
    """`HEAD` on a write path: 200 when the token may write to the campaign.

    Sending tools (Census, Hightouch) check a destination this way before a sync.
    """

    def view(slug: str) -> Response:
        campaign_for(slug, write=True)
        return Response(status=200)

    view.__name__ = operation_id
    operation(
        rule,
        "HEAD",
        summary="Connection test for a sending tool",
        scope="write",
        responses={200: ("The token may write to this campaign", None)},
    )(view)


def entry_count(campaign: Campaign) -> dict[str, Any]:
    """Live entries of a campaign: exact when small, PostgreSQL's estimate when large.

    The bounded count stops at EXACT_COUNT_LIMIT rows, so it never scans a
    campaign of millions; past that, the planner's row estimate of the same
    query answers without reading it.
    """
    live = (ContentEntry.campaign_id == campaign.id) & ContentEntry.deleted.is_(False)
    bounded = select(ContentEntry.id).where(live).limit(EXACT_COUNT_LIMIT + 1).subquery()
    count = db.session.execute(select(func.count()).select_from(bounded)).scalar_one()
    if count <= EXACT_COUNT_LIMIT or not bulk.postgresql():
        return {"entries": count, "estimated": False}
    plan = db.session.execute(
        text(
            "EXPLAIN (FORMAT JSON) SELECT 1 FROM content_entry "
            "WHERE campaign_id = :campaign_id AND NOT deleted"
        ),
        {"campaign_id": campaign.id},
    ).scalar_one()
    return {"entries": int(plan[0]["Plan"]["Plan Rows"]), "estimated": True}


def campaign_document(campaign: Campaign, with_counts: bool) -> dict[str, Any]:
    """What the API shows of a campaign."""
    document: dict[str, Any] = {
        "slug": campaign.slug,
        "name": campaign.name,
        "active": bool(campaign.active),
        "public": bool(campaign.public),
        "is_default": bool(campaign.is_default),
        "fields": [
            {"name": field["name"], "max_length": field["max_length"]}
            for field in campaign.field_schema or []
        ],
        "fallback_policy": campaign.fallback_policy,
        "default_fields": dict(campaign.default_fields or {}),
        "max_age": campaign.max_age,
        "version": campaign.version,
    }
    if with_counts:
        document["counts"] = entry_count(campaign)
    return document


@operation(
    "/campaigns",
    "GET",
    summary="List the campaigns this token may use",
    responses={200: ("The campaigns, by slug", "CampaignList")},
    links={200: ["get_campaign", "put_entry", "batch_entries", "create_import"]},
    link_parameters={"slug": "$response.body#/campaigns/0/slug"},
)
def list_campaigns() -> Response:
    campaigns = db.session.scalars(select(Campaign).order_by(Campaign.slug))
    token = token_auth.token()
    return jsonify(
        {
            "campaigns": [
                campaign_document(campaign, with_counts=False)
                for campaign in campaigns
                if token.allows(campaign.slug)
            ]
        }
    )


@operation(
    "/campaigns/<slug>",
    "GET",
    summary="One campaign: its fields, fallback policy and entry count",
    responses={200: ("The campaign", "Campaign")},
)
def get_campaign(slug: str) -> Response:
    return jsonify(campaign_document(campaign_for(slug), with_counts=True))
