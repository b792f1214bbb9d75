"""The Braze Connected Content snippet for each fallback policy and credential style."""

from __future__ import annotations

import html

import pytest
from common.publishing_support import make_campaign
from common.support import login

from ccadmin.content.snippets import AUTH_BASIC, CACHE_NOTE, connected_content_snippet
from ccadmin.models import Campaign

URL = "https://content.example.com"


def campaign(**values) -> Campaign:
    values.setdefault("slug", "spring-sale")
    values.setdefault(
        "field_schema",
        [{"name": "message", "max_length": 140}, {"name": "image_url", "max_length": 400}],
    )
    values.setdefault("public", False)
    values.setdefault("fallback_policy", "default")
    return Campaign(**values)


def test_default_fallback_sends_defaults_and_aborts_on_errors():
    snippet = connected_content_snippet(campaign(), URL)
    assert snippet.tag == (
        "{% connected_content https://content.example.com/v1/spring-sale"
        "?user_id={{${user_id} | url_param_escape}}"
        ' :headers {"X-API-Key": "YOUR_API_KEY"} :save cc :retry %}'
    )
    assert snippet.guard == (
        "{% if cc.has_content == nil or cc.message == blank %}"
        '{% abort_message("content unavailable") %}{% endif %}'
    )
    assert snippet.usage == "{{cc.message}}\n{{cc.image_url}}"
    assert snippet.text.splitlines() == [snippet.tag, snippet.guard, *snippet.usage.splitlines()]
    assert CACHE_NOTE in snippet.notes
    assert any("default fields" in note for note in snippet.notes)


def test_not_found_fallback_skips_users_without_content():
    snippet = connected_content_snippet(campaign(fallback_policy="not_found"), URL)
    assert snippet.guard == (
        "{% if cc.has_content != true or cc.message == blank %}"
        '{% abort_message("no content for this user") %}{% endif %}'
    )
    assert any("skipped" in note for note in snippet.notes)


def test_basic_auth_names_a_braze_credential():
    snippet = connected_content_snippet(campaign(), URL, AUTH_BASIC)
    assert ":basic_auth ccadmin_spring_sale :save cc :retry %}" in snippet.tag
    assert ":headers" not in snippet.tag
    assert any("credential named ccadmin_spring_sale" in note for note in snippet.notes)


def test_public_campaign_needs_no_credentials_and_a_missing_url_is_a_placeholder():
    snippet = connected_content_snippet(campaign(public=True), None)
    assert ":headers" not in snippet.tag and ":basic_auth" not in snippet.tag
    assert snippet.tag.startswith("{% connected_content https://YOUR-CONTENT-API/v1/spring-sale?")
    assert any("YOUR-CONTENT-API" in note for note in snippet.notes)


def test_unknown_auth_style_is_refused():
    with pytest.raises(ValueError):
        connected_content_snippet(campaign(), URL, "cookie")


def test_campaign_pages_show_the_snippet(client, make_user, app):
    spring = make_campaign("spring", fallback_policy="not_found")
    make_user("vi@example.com", role="viewer")
    login(client, "vi@example.com")
    page = html.unescape(
        client.get(f"/admin/campaigns/details/?id={spring.id}").get_data(as_text=True)
    )
    assert "{% connected_content https://YOUR-CONTENT-API/v1/spring?user_id=" in page
    assert 'abort_message("no content for this user")' in page
    tools = html.unescape(
        client.get(f"/admin/campaign-tools/{spring.id}/?auth=basic_auth").get_data(as_text=True)
    )
    assert ":basic_auth ccadmin_spring :save cc :retry %}" in tools
