"""Rendering of what the API serves, done once by the worker, never per request.

Standard library only: the worker renders, the admin preview renders the same
way, and the API only concatenates the stored pieces.
"""

from __future__ import annotations

import json
from typing import Any

# Stands in for the user id while rendering a campaign's fallback body; the
# API splices the JSON-encoded user id in its place.
_USER_ID_SLOT = "\x00user_id\x00"


def _dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def render_payload(
    campaign_slug: str,
    user_id: str,
    version: int,
    fields: dict[str, Any],
    has_content: bool = True,
) -> bytes:
    """The exact JSON body the caller receives for one user."""
    document = {
        "user_id": user_id,
        "campaign": campaign_slug,
        "has_content": has_content,
        "version": version,
    }
    for name, value in fields.items():
        document.setdefault(name, value)
    return _dumps(document).encode("utf-8")


def render_fallback_parts(
    campaign_slug: str, campaign_version: int, default_fields: dict[str, Any]
) -> tuple[str, str]:
    """Prefix and suffix of the fallback body around the JSON-encoded user id."""
    document = {
        "user_id": _USER_ID_SLOT,
        "campaign": campaign_slug,
        "has_content": False,
        "version": campaign_version,
    }
    for name, value in default_fields.items():
        document.setdefault(name, value)
    rendered = _dumps(document)
    marker = json.dumps(_USER_ID_SLOT)
    prefix, suffix = rendered.split(marker, 1)
    return prefix, suffix


def render_fallback(prefix: str, suffix: str, user_id: str) -> bytes:
    """The fallback body for one user, from the parts stored in the config."""
    return (prefix + json.dumps(user_id, ensure_ascii=False) + suffix).encode("utf-8")


def campaign_config(
    *,
    slug: str,
    version: int,
    active: bool,
    public: bool,
    fallback: str,
    max_age: int,
    default_fields: dict[str, Any],
) -> str:
    """The JSON the API keeps in memory for one campaign (stored in keys.CAMPAIGNS)."""
    prefix, suffix = render_fallback_parts(slug, version, default_fields)
    return _dumps(
        {
            "slug": slug,
            "version": version,
            "active": active,
            "public": public,
            "fallback": fallback,
            "max_age": max_age,
            "fallback_prefix": prefix,
            "fallback_suffix": suffix,
        }
    )
