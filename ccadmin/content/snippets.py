"""The Braze Connected Content tag for a campaign, ready to paste into a message.

The user id goes through `url_param_escape` (ids may hold `@`, `+` or spaces),
the response is saved to a variable, transient failures are retried, and the
message is aborted rather than sent with nothing in it: on any error answer,
and, for a campaign whose users without content get a 404, for those users.
"""

from __future__ import annotations

from dataclasses import dataclass

from ccadmin.models import Campaign
from ccadmin.models.campaign import FALLBACK_NOT_FOUND

AUTH_HEADERS = "headers"
AUTH_BASIC = "basic_auth"
AUTH_STYLES = (AUTH_HEADERS, AUTH_BASIC)
API_URL_PLACEHOLDER = "https://YOUR-CONTENT-API"
KEY_PLACEHOLDER = "YOUR_API_KEY"
SAVE_AS = "cc"

CACHE_NOTE = (
    "Braze caches GET responses for at least 5 minutes, keyed by the full URL "
    "(so per user), and for up to 4 hours with :cache_max_age; an edit here can "
    "take that long to reach sends to a user already fetched. Add :no_cache "
    "to fetch on every send, at the cost of more calls."
)


@dataclass
class Snippet:
    """The tag, the Liquid around it, and what the marketer must fill in."""

    tag: str
    guard: str
    # One line per field of the campaign's schema.
    usage: str
    notes: list[str]

    @property
    def text(self) -> str:
        """Everything to paste, in order."""
        return "\n".join((self.tag, self.guard, self.usage))


def credential_name(campaign: Campaign) -> str:
    """The name suggested for the Braze credential holding the key."""
    return f"ccadmin_{campaign.slug}".replace("-", "_")


def campaign_url(campaign: Campaign, api_url: str | None) -> str:
    """The campaign's URL with the Liquid user id, escaped for a query string."""
    base = (api_url or API_URL_PLACEHOLDER).rstrip("/")
    return f"{base}/v1/{campaign.slug}?user_id={{{{${{user_id}} | url_param_escape}}}}"


def connected_content_snippet(
    campaign: Campaign, api_url: str | None, auth: str = AUTH_HEADERS
) -> Snippet:
    """The tag and its abort logic, matching the campaign's fallback policy."""
    if auth not in AUTH_STYLES:
        raise ValueError(f"auth must be one of {', '.join(AUTH_STYLES)}")
    parts = ["{% connected_content", campaign_url(campaign, api_url)]
    notes = []
    if not campaign.public:
        if auth == AUTH_BASIC:
            name = credential_name(campaign)
            parts.append(f":basic_auth {name}")
            notes.append(
                f"Create a Braze Connected Content credential named {name} with any "
                "username and the API key as its password."
            )
        else:
            parts.append(f':headers {{"X-API-Key": "{KEY_PLACEHOLDER}"}}')
            notes.append(
                f"Replace {KEY_PLACEHOLDER} with an API key allowed to read this campaign."
            )
    parts.extend((f":save {SAVE_AS}", ":retry %}"))
    if campaign.fallback_policy == FALLBACK_NOT_FOUND:
        # Users without content get a 404, which leaves the variable empty.
        guard = (
            f"{{% if {SAVE_AS}.has_content != true or {SAVE_AS}.message == blank %}}"
            '{% abort_message("no content for this user") %}{% endif %}'
        )
        notes.append("Users without content are skipped: the message is not sent to them.")
    else:
        # Users without content get the campaign's default fields; an error
        # answer has no has_content, and its "message" must never be sent.
        guard = (
            f"{{% if {SAVE_AS}.has_content == nil or {SAVE_AS}.message == blank %}}"
            '{% abort_message("content unavailable") %}{% endif %}'
        )
        notes.append(
            "Users without content receive the campaign's default fields "
            f"({SAVE_AS}.has_content is false for them)."
        )
    if api_url is None:
        notes.append(f"Replace {API_URL_PLACEHOLDER} with the endpoint's public https URL.")
    notes.append(CACHE_NOTE)
    return Snippet(
        tag=" ".join(parts),
        guard=guard,
        usage="\n".join(f"{{{{{SAVE_AS}.{name}}}}}" for name in campaign.field_names),
        notes=notes,
    )
