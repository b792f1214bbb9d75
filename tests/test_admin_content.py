"""Content entries through the admin: versions, tombstones, outbox, validation, live status."""

from __future__ import annotations

import dataclasses
import html
import json
import re
from datetime import UTC, datetime

import pytest
from common.publishing_support import save_entry
from common.support import csrf_token, free_port, login
from sqlalchemy import event, select
from werkzeug.datastructures import MultiDict

from ccadmin import keys
from ccadmin.admin.audit import AuditView
from ccadmin.admin.content import ContentView
from ccadmin.app import create_app
from ccadmin.extensions import db
from ccadmin.imports import scheduling
from ccadmin.models import (
    AuditEvent,
    Campaign,
    ContentEntry,
    OutboxEvent,
    PublishFailure,
    ScheduledChange,
)
from ccadmin.models.outbox import KIND_CONTENT

NEW = "/admin/content/new/"


@pytest.fixture
def campaign(app) -> Campaign:
    campaign = Campaign(
        slug="spring",
        name="Spring",
        field_schema=[{"name": "message", "max_length": 20}, {"name": "cta", "max_length": 10}],
        is_default=True,
    )
    db.session.add(campaign)
    db.session.commit()
    return campaign


@pytest.fixture
def editor_client(client, make_user, campaign):
    make_user("ed@example.com", role="editor")
    login(client, "ed@example.com")
    return client


def create_entry(client, campaign_id: int, user_id: str, **fields):
    url = f"{NEW}?campaign_id={campaign_id}"
    data = {
        "campaign_id": str(campaign_id),
        "user_id": user_id,
        "csrf_token": csrf_token(client, url),
    }
    data.update({f"field_{name}": value for name, value in fields.items()})
    return client.post(url, data=data)


def edit_entry(client, entry_id: int, **fields):
    url = f"/admin/content/edit/?id={entry_id}"
    data = {f"field_{name}": value for name, value in fields.items()}
    return client.post(url, data={**data, "csrf_token": csrf_token(client, url)})


def delete_entry(client, entry_id: int):
    token = csrf_token(client, "/admin/content/")
    return client.post("/admin/content/delete/", data={"id": str(entry_id), "csrf_token": token})


def entry_for(user_id: str) -> ContentEntry | None:
    db.session.expire_all()
    return db.session.scalars(select(ContentEntry).where(ContentEntry.user_id == user_id)).first()


_ROW = re.compile(r"<tr>(.*?)</tr>", re.S)
_CELL = re.compile(r'<td class="col-(\w+)">\s*(.*?)\s*</td>', re.S)


def list_rows(page: str) -> dict[str, dict[str, str]]:
    """The list table's rows by user id: {column: cell HTML}."""
    rows = {}
    for row in _ROW.findall(page):
        cells = dict(_CELL.findall(row))
        if "user_id" in cells:
            rows[cells["user_id"]] = cells
    return rows


def content_events(entry_id: int) -> list[OutboxEvent]:
    return db.session.scalars(
        select(OutboxEvent)
        .where(OutboxEvent.kind == KIND_CONTENT, OutboxEvent.content_entry_id == entry_id)
        .order_by(OutboxEvent.id)
    ).all()


def add_summer_campaign() -> Campaign:
    """A second campaign, with an image_url field the default one lacks."""
    other = Campaign(
        slug="summer",
        name="Summer",
        field_schema=[
            {"name": "message", "max_length": 140},
            {"name": "image_url", "max_length": 300},
        ],
    )
    db.session.add(other)
    db.session.commit()
    return other


def test_create_form_follows_the_campaign_schema(editor_client, campaign):
    other = add_summer_campaign()
    page = editor_client.get(NEW).get_data(as_text=True)
    # The default campaign is chosen first.
    assert 'name="field_cta"' in page and 'name="field_image_url"' not in page
    page = editor_client.get(f"{NEW}?campaign_id={other.id}").get_data(as_text=True)
    assert 'name="field_image_url"' in page and 'name="field_cta"' not in page
    assert "At most 300 characters." in page


def test_create_entry(editor_client, campaign):
    response = create_entry(editor_client, campaign.id, "42", message="Hello 42", cta="Buy")
    assert response.status_code == 302, response.get_data(as_text=True)

    entry = entry_for("42")
    assert entry.fields == {"message": "Hello 42", "cta": "Buy"}
    assert entry.version == 1 and not entry.deleted
    assert entry.updated_by == "ed@example.com"
    (outbox_event,) = content_events(entry.id)
    assert outbox_event.version == 1 and outbox_event.campaign_id == campaign.id
    assert entry.last_event_id == outbox_event.id
    audit = db.session.scalars(select(AuditEvent)).one()
    assert (audit.action, audit.target_type, audit.actor) == (
        "create",
        "content_entry",
        "ed@example.com",
    )
    assert audit.after["fields"] == {"message": "Hello 42", "cta": "Buy"}


def test_edit_then_delete_keeps_a_hidden_tombstone(editor_client, campaign):
    create_entry(editor_client, campaign.id, "42", message="Hello")
    entry_id = entry_for("42").id

    page = editor_client.get(f"/admin/content/edit/?id={entry_id}").get_data(as_text=True)
    assert "\nHello</textarea>" in page

    assert edit_entry(editor_client, entry_id, message="Hello again").status_code == 302
    entry = entry_for("42")
    assert entry.version == 2 and entry.fields == {"message": "Hello again"}
    assert [e.version for e in content_events(entry_id)] == [1, 2]

    assert delete_entry(editor_client, entry_id).status_code == 302
    entry = entry_for("42")
    assert entry is not None and entry.deleted and entry.version == 3
    assert [e.version for e in content_events(entry_id)] == [1, 2, 3]
    assert entry.last_event_id == content_events(entry_id)[-1].id
    actions = db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions == ["create", "update", "delete"]

    listing = editor_client.get("/admin/content/?search=42").get_data(as_text=True)
    assert "Hello again" not in listing
    assert editor_client.get(f"/admin/content/edit/?id={entry_id}").status_code == 302


def test_create_after_delete_revives_the_row(editor_client, campaign):
    create_entry(editor_client, campaign.id, "42", message="First")
    entry_id = entry_for("42").id
    delete_entry(editor_client, entry_id)

    response = create_entry(editor_client, campaign.id, "42", message="Second life")
    assert response.status_code == 302
    entry = entry_for("42")
    assert entry.id == entry_id
    assert entry.version == 3 and not entry.deleted
    assert entry.fields == {"message": "Second life"}
    assert [e.version for e in content_events(entry_id)] == [1, 2, 3]


def test_duplicate_user_is_a_form_error(editor_client, campaign):
    create_entry(editor_client, campaign.id, "42", message="First")
    response = create_entry(editor_client, campaign.id, "42", message="Again")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "already has content in this campaign" in page
    entry = entry_for("42")
    assert entry.version == 1 and entry.fields == {"message": "First"}


@pytest.mark.parametrize(
    ("user_id", "fields", "messages"),
    [
        (
            "42",
            {"message": "x" * 21, "cta": "y" * 11},
            [
                "Too long: 21 characters, at most 20.",
                "Too long: 11 characters, at most 10.",
            ],
        ),
        ("42", {"message": "  ", "cta": "Go"}, ["A message is required."]),
        ("", {"message": "Hi"}, ["A user id is required."]),
        ("x" * 129, {"message": "Hi"}, ["At most 128 characters."]),
        ("4\x012", {"message": "Hi"}, ["Control characters are not allowed."]),
    ],
)
def test_invalid_entry_shows_a_message_per_field(
    editor_client, campaign, user_id, fields, messages
):
    response = create_entry(editor_client, campaign.id, user_id, **fields)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    for message in messages:
        assert message in page
    assert db.session.scalars(select(ContentEntry)).all() == []
    assert db.session.scalars(select(OutboxEvent)).all() == []


def test_invalid_edit_changes_nothing(editor_client, campaign):
    create_entry(editor_client, campaign.id, "42", message="Hello")
    entry_id = entry_for("42").id
    response = edit_entry(editor_client, entry_id, message="x" * 25)
    assert "Too long: 25 characters, at most 20." in response.get_data(as_text=True)
    entry = entry_for("42")
    assert entry.version == 1 and entry.fields == {"message": "Hello"}


def test_search_is_an_exact_user_id_match(editor_client, campaign):
    for user_id in ("4", "42", "142"):
        create_entry(editor_client, campaign.id, user_id, message=f"msg-{user_id}-end")
    page = editor_client.get("/admin/content/?search=42").get_data(as_text=True)
    assert "msg-42-end" in page
    assert "msg-4-end" not in page and "msg-142-end" not in page


def test_filter_by_campaign(editor_client, campaign):
    other = Campaign(slug="summer", name="Summer")
    db.session.add(other)
    db.session.commit()
    create_entry(editor_client, campaign.id, "1", message="spring-one")
    create_entry(editor_client, other.id, "2", message="summer-two")
    page = editor_client.get("/admin/content/").get_data(as_text=True)
    assert "spring-one" in page and "summer-two" in page
    assert f'[{other.id}, "summer"]' in page  # the filter's choices, read by the page script
    page = editor_client.get(f"/admin/content/?flt0_0={other.id}").get_data(as_text=True)
    assert "summer-two" in page and "spring-one" not in page


def test_list_never_counts_the_whole_table(editor_client, campaign):
    for user_id in range(3):
        create_entry(editor_client, campaign.id, str(user_id), message="hi")
    statements: list[str] = []

    def remember(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement.lower())

    event.listen(db.engine, "before_cursor_execute", remember)
    try:
        for url in ("/admin/content/", "/admin/content/?page=1", "/admin/content/?search=1"):
            assert editor_client.get(url).status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", remember)
    assert any("from content_entry" in statement for statement in statements)
    counts = [statement for statement in statements if "count(" in statement]
    # Counted up to a cap, in a subquery with a LIMIT; past it the total is an estimate.
    assert counts and all("limit" in statement for statement in counts)


def pager_link(page: str, link_id: str) -> str:
    return html.unescape(re.search(rf'id="{link_id}"\s+href="([^"]+)"', page).group(1))


def position(page: str) -> str:
    return " ".join(re.search(r'id="list-position">(.*?)</p>', page, re.S).group(1).split())


def test_list_pages_by_cursor_forward_and_back(editor_client, campaign):
    entries = [
        ContentEntry(campaign_id=campaign.id, user_id=f"u{n}", fields={"message": f"m{n}"})
        for n in range(55)
    ]
    db.session.add_all(entries)
    db.session.commit()
    first = editor_client.get("/admin/content/").get_data(as_text=True)
    second = editor_client.get(pager_link(first, "page-next")).get_data(as_text=True)
    # Newest first: the last five inserted are on page one, the first five on page two.
    assert "u54" in list_rows(first) and "u0" not in list_rows(first)
    assert "u0" in list_rows(second) and "u54" not in list_rows(second)
    assert len(list_rows(first)) == 50 and len(list_rows(second)) == 5
    assert (position(first), position(second)) == ("1–50 of 55", "51–55 of 55")
    assert 'id="page-next"' not in second
    back = editor_client.get(pager_link(second, "page-previous")).get_data(as_text=True)
    assert list_rows(back) == list_rows(first) and position(back) == "1–50 of 55"


def test_list_sorts_by_version_and_time_through_the_pages(editor_client, campaign):
    db.session.add_all(
        ContentEntry(campaign_id=campaign.id, user_id=f"u{n}", fields={"message": "m"}, version=n)
        for n in range(1, 61)
    )
    db.session.commit()
    version_column = ContentView.column_list.index("version")
    url = f"/admin/content/?sort={version_column}&desc=1"
    first = editor_client.get(url).get_data(as_text=True)
    second = editor_client.get(pager_link(first, "page-next")).get_data(as_text=True)
    versions = [int(row["version"]) for row in list_rows(first).values()]
    versions += [int(row["version"]) for row in list_rows(second).values()]
    assert versions == list(range(60, 0, -1))
    time_column = ContentView.column_list.index("updated_at")
    page = editor_client.get(f"/admin/content/?sort={time_column}").get_data(as_text=True)
    assert len(list_rows(page)) == 50


def test_a_damaged_page_link_or_a_huge_page_number_is_not_an_error_page(editor_client, campaign):
    assert editor_client.get("/admin/content/?after=not-a-cursor").status_code == 400
    assert editor_client.get("/admin/content/?page=99999999999999999999").status_code == 400
    assert editor_client.get("/admin/content/?start=99999999999999999999").status_code == 200


def test_live_version_comes_from_redis(editor_client, campaign, redis_client):
    create_entry(editor_client, campaign.id, "42", message="Hello")
    entry_id = entry_for("42").id
    edit_entry(editor_client, entry_id, message="Hello 2")
    key = keys.entry_key("spring", "42")
    # The hash a worker writes once version 1 is published.
    redis_client.hset(key, mapping={keys.ENTRY_VERSION_FIELD: "1", keys.ENTRY_BODY_FIELD: b"{}"})

    row = list_rows(editor_client.get("/admin/content/").get_data(as_text=True))["42"]
    assert (row["version"], row["live_version"]) == ("2", "1")
    assert row["status"] == '<span class="badge badge-info">publishing</span>'

    redis_client.hset(key, keys.ENTRY_VERSION_FIELD, "2")
    row = list_rows(editor_client.get("/admin/content/").get_data(as_text=True))["42"]
    assert (row["version"], row["live_version"]) == ("2", "2")
    assert row["status"] == '<span class="badge badge-success">live</span>'


def test_messages_are_escaped(editor_client, campaign):
    create_entry(editor_client, campaign.id, "<b>x</b>", message="<img src=x>")
    page = editor_client.get("/admin/content/").get_data(as_text=True)
    assert "<img src=x>" not in page and "<b>x</b>" not in page
    assert "&lt;img src=x&gt;" in page


def test_audit_details_show_the_change_as_an_escaped_diff(editor_client, campaign):
    create_entry(editor_client, campaign.id, "42", message="<img src=x>")
    edit_entry(editor_client, entry_for("42").id, message="Hello")
    audit_id = max(db.session.scalars(select(AuditEvent.id)))
    page = editor_client.get(f"/admin/audit/details/?id={audit_id}").get_data(as_text=True)
    changes = page.split('id="audit-changes"', 1)[1].split("</table>", 1)[0]
    assert "<th scope='row'>field message</th><td><del>&lt;img src=x&gt;</del></td>" in changes
    assert "<td><ins>Hello</ins></td>" in changes
    assert "<th scope='row'>version</th><td><del>1</del></td><td><ins>2</ins></td>" in changes
    assert "<img src=x>" not in page


def test_audit_list_names_the_user_and_campaign_and_what_made_a_change(editor_client, campaign):
    create_entry(editor_client, campaign.id, "42", message="Hello")
    entry = entry_for("42")
    page = editor_client.get("/admin/audit/").get_data(as_text=True)
    assert f'<a href="/admin/content/details/?id={entry.id}">user 42</a> in spring' in page
    change = ScheduledChange(
        campaign_id=campaign.id,
        user_id="42",
        fields={"message": "Later"},
        run_at=datetime.now(UTC),
        created_by="ed@example.com",
    )
    db.session.add(change)
    db.session.commit()
    scheduling.apply_scheduled_change(change.id)
    page = editor_client.get("/admin/audit/").get_data(as_text=True)
    assert f"scheduled change #{change.id}, set by ed@example.com" in page
    # Newest first by default; sorted by time on request.
    column = AuditView.column_list.index("at")
    assert editor_client.get(f"/admin/audit/?sort={column}").status_code == 200
    window = "flt0_3=2020-01-01+00:00:00+to+2020-01-02+00:00:00"
    assert "user 42" not in editor_client.get(f"/admin/audit/?{window}").get_data(as_text=True)


def test_export_csv(editor_client, campaign):
    create_entry(editor_client, campaign.id, "42", message="Hello", cta="Go")
    response = editor_client.get("/admin/content/export/csv/")
    assert response.status_code == 200
    lines = response.get_data(as_text=True).splitlines()
    assert lines[0] == "Campaign,User id,Fields,Version,Updated At,Updated By"
    assert lines[1].startswith("spring,42,")
    assert json.loads(
        lines[1].split(",", 2)[2].rsplit(",", 3)[0].strip('"').replace('""', '"')
    ) == {
        "message": "Hello",
        "cta": "Go",
    }


@pytest.fixture
def app_without_redis(app, settings):
    """The same database, but Redis at a port nobody listens on."""
    unreachable = dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    down = create_app({"TESTING": True, "CCADMIN_SETTINGS": unreachable})
    with down.app_context():
        yield down


def test_save_with_redis_down_commits_and_says_publish_pending(
    app_without_redis, campaign, make_user
):
    make_user("ed@example.com", role="editor")
    client = app_without_redis.test_client()
    login(client, "ed@example.com")
    response = create_entry(client, campaign.id, "42", message="Hello")
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Publish pending" in page
    entry = entry_for("42")
    assert entry is not None and entry.version == 1
    (outbox_event,) = content_events(entry.id)
    assert outbox_event.published_at is None
    # The list still renders, with the live version unknown.
    row = list_rows(page)["42"]
    assert row["live_version"] == "unknown"
    assert "unknown" in row["status"]


def test_create_without_any_campaign_says_what_to_do(client, make_user):
    make_user("ed@example.com", role="editor")
    login(client, "ed@example.com")
    token = csrf_token(client, NEW)
    response = client.post(NEW, data={"user_id": "42", "csrf_token": token})
    assert response.status_code == 200
    assert "Create a campaign first." in response.get_data(as_text=True)


NOT_UNICODE = "Not valid Unicode text (an unpaired surrogate)."


@pytest.fixture
def form_posts(monkeypatch):
    """Let a test put values in a form post that no browser sends (lone surrogates).

    Browsers replace them before posting, so the form's own check is reached by
    swapping in the data the view reads; the request itself (CSRF) stays real.
    """
    from werkzeug.datastructures import MultiDict

    from ccadmin.admin import content

    values: dict[str, str] = {}
    real = content.get_form_data

    def with_values() -> MultiDict | None:
        posted = real()
        return None if posted is None else MultiDict({**posted.to_dict(), **values})

    monkeypatch.setattr(content, "get_form_data", with_values)
    return values


@pytest.mark.parametrize(
    ("posted", "field"),
    [({"field_message": "bad \ud800"}, "message"), ({"user_id": "4\udc002"}, "user_id")],
)
def test_create_form_refuses_unpaired_surrogates(
    editor_client, campaign, form_posts, posted, field
):
    form_posts.update(posted)
    response = create_entry(editor_client, campaign.id, "42", message="Hello", cta="Go")
    assert response.status_code == 200
    assert NOT_UNICODE in response.get_data(as_text=True)
    assert db.session.scalars(select(ContentEntry)).all() == []
    assert db.session.scalars(select(OutboxEvent)).all() == []


def test_edit_form_refuses_unpaired_surrogates_and_keeps_the_entry(
    editor_client, campaign, form_posts
):
    create_entry(editor_client, campaign.id, "42", message="Hello")
    form_posts["field_cta"] = "\udfff"
    response = edit_entry(editor_client, entry_for("42").id, message="Hello")
    assert NOT_UNICODE in response.get_data(as_text=True)
    entry = entry_for("42")
    assert entry.version == 1 and entry.fields == {"message": "Hello"}


def test_bytes_that_are_not_utf8_in_a_form_post_never_break_the_list(editor_client, campaign):
    url = f"{NEW}?campaign_id={campaign.id}"
    body = (
        f"campaign_id={campaign.id}&user_id=42&field_message=bad%ED%A0%80"
        f"&csrf_token={csrf_token(editor_client, url)}"
    )
    response = editor_client.post(url, data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code in (200, 302)
    for entry in db.session.scalars(select(ContentEntry)):
        json.dumps(entry.fields, ensure_ascii=False).encode("utf-8")
    assert editor_client.get("/admin/content/").status_code == 200
    export = editor_client.get("/admin/content/export/csv/")
    assert export.status_code == 200 and export.get_data()


def test_switching_campaign_keeps_what_was_typed_and_saves_nothing(editor_client, campaign):
    other = add_summer_campaign()
    response = editor_client.post(
        f"{NEW}?campaign_id={campaign.id}",
        data={
            "campaign_id": str(other.id),
            "user_id": "42",
            "field_message": "Typed <i>first</i>",
            "field_cta": "Go",
            "switch_campaign": "1",
            "csrf_token": csrf_token(editor_client, NEW),
        },
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'name="field_image_url"' in page and 'name="field_cta"' not in page
    assert re.search(r'<input[^>]*id="user_id"[^>]*value="42"', page)
    assert "Typed &lt;i&gt;first&lt;/i&gt;</textarea>" in page
    assert re.search(rf'<option selected value="{other.id}">|value="{other.id}" selected', page)
    assert "is-invalid" not in page  # nothing was checked, so nothing is flagged
    assert db.session.scalars(select(ContentEntry)).all() == []


def test_entry_inputs_have_counters_and_no_maxlength(editor_client, campaign):
    page = editor_client.get(NEW).get_data(as_text=True)
    assert 'data-max-length="20"' in page and 'data-max-length="10"' in page
    assert "maxlength" not in page
    assert "admin/char-counter.js" in page


def test_bulk_delete_asks_with_the_count_first(editor_client, campaign):
    for user_id in ("1", "2", "3"):
        create_entry(editor_client, campaign.id, user_id, message=f"Hello {user_id}")
    ids = [str(entry_for(user_id).id) for user_id in ("1", "2", "3")]
    token = csrf_token(editor_client, "/admin/content/")
    data = MultiDict([("action", "delete"), ("csrf_token", token), *(("rowid", i) for i in ids)])
    first = editor_client.post("/admin/content/action/", data=data)
    page = first.get_data(as_text=True)
    assert first.status_code == 200
    assert "Delete: this changes 3 content entries." in page
    assert page.count('name="rowid"') == 3
    assert not any(entry_for(user_id).deleted for user_id in ("1", "2", "3"))
    # "With selected" asks on the server, so the browser prompt is gone.
    listing = editor_client.get("/admin/content/").get_data(as_text=True)
    assert "Are you sure you want to delete selected records?" not in listing

    data.add("confirm", "3")
    assert editor_client.post("/admin/content/action/", data=data).status_code == 302
    assert all(entry_for(user_id).deleted for user_id in ("1", "2", "3"))


def listed(client, query: str) -> set[str]:
    return set(list_rows(client.get(f"/admin/content/?{query}").get_data(as_text=True)))


def test_search_finds_words_in_the_fields_or_the_exact_user_id(editor_client, campaign):
    messages = {
        "u1": "Black Friday 20% off",
        "u2": "Spring sale",
        "u3": "Friday brunch",
        "u5": 'say "hello" now',
        "friday": "x",
        "fr": "y",
    }
    for user_id, message in messages.items():
        assert create_entry(editor_client, campaign.id, user_id, message=message).status_code == 302
    # Words ignore case; a user id is exact.
    assert listed(editor_client, "search=FRIDAY") == {"u1", "u3"}
    assert listed(editor_client, "search=friday") == {"u1", "u3", "friday"}
    assert listed(editor_client, "search=fri") == {"u1", "u3"}
    # Every word must be there; punctuation is not part of a word.
    assert listed(editor_client, "search=black+friday") == {"u1"}
    assert listed(editor_client, "search=friday%3A+20%25") == {"u1"}
    assert listed(editor_client, "search=%22hello%22") == {"u5"}
    # Too short for words: the exact user id only. Field names are not content.
    assert listed(editor_client, "search=fr") == {"fr"}
    assert listed(editor_client, "search=message") == set()
    # Query syntax is plain text: "!" negates nothing, so both words are needed.
    assert listed(editor_client, "search=friday+%26+%21sale") == set()


def test_filters_by_publish_status_author_and_time(editor_client, campaign):
    for user_id in ("waiting", "published", "set-aside"):
        save_entry(campaign, user_id, "hello")
    published = entry_for("published")
    db.session.get(OutboxEvent, published.last_event_id).published_at = datetime.now(UTC)
    published.updated_by = "ana@example.com"
    published.updated_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    db.session.commit()
    set_aside = entry_for("set-aside")
    db.session.get(OutboxEvent, set_aside.last_event_id).published_at = datetime.now(UTC)
    db.session.add(
        PublishFailure(content_entry_id=set_aside.id, version=set_aside.version, error="x")
    )
    db.session.commit()
    assert listed(editor_client, "flt0_1=waiting") == {"waiting"}
    assert listed(editor_client, "flt0_1=published") == {"published"}
    assert listed(editor_client, "flt0_1=failing") == {"set-aside"}
    assert listed(editor_client, "flt0_2=ana@example.com") == {"published"}
    between = "flt0_3=2026-01-02+00:00:00+to+2026-01-03+00:00:00"
    assert listed(editor_client, between) == {"published"}
