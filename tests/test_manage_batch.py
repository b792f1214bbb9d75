"""The batch endpoint: one transaction, per-row errors by index, all-or-nothing or partial."""

from __future__ import annotations

import json

import pytest
from common.manage_support import SCHEMA, bearer, make_token
from common.publishing_support import make_campaign, save_entry
from sqlalchemy import func, select

from ccadmin.content import history
from ccadmin.content.schema import MAX_FIELD_LENGTH, MAX_FIELDS
from ccadmin.extensions import db
from ccadmin.manage import schemas
from ccadmin.models import AuditEvent, ContentEntry, OutboxEvent
from ccadmin.models.outbox import KIND_CONTENT

URL = "/manage/v1/campaigns/spring/content:batch"


@pytest.fixture
def campaign(app):
    return make_campaign("spring", field_schema=SCHEMA)


@pytest.fixture
def token(campaign) -> str:
    return make_token()


def entries(campaign) -> dict[str, ContentEntry]:
    db.session.expire_all()
    return {
        entry.user_id: entry
        for entry in db.session.scalars(
            select(ContentEntry).where(ContentEntry.campaign_id == campaign.id)
        )
    }


def test_batch_writes_every_row_with_one_outbox_event(client, campaign, token):
    save_entry(campaign, "1", "Old")
    rows = [{"user_id": "1", "message": "New"}, {"user_id": 2, "message": "Hi", "cta": "Go"}]
    response = client.post(URL, json=rows, headers=bearer(token))
    assert response.status_code == 200, response.json
    assert response.json["created"] == 1 and response.json["updated"] == 1
    assert response.json["errors"] == [] and response.json["invalid"] == 0
    stored = entries(campaign)
    assert stored["1"].fields == {"message": "New"} and stored["1"].version == 2
    assert stored["2"].fields == {"message": "Hi", "cta": "Go"} and stored["2"].version == 1
    assert stored["2"].updated_by == "token:crm-sync"
    batch_events = db.session.scalars(
        select(OutboxEvent).where(OutboxEvent.kind == KIND_CONTENT, OutboxEvent.entry_count == 2)
    ).all()
    assert len(batch_events) == 1 and stored["2"].last_event_id == batch_events[0].id
    audit = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "import")).one()
    assert audit.actor == "token:crm-sync" and audit.after["written"] == 2
    # The entry's history shows the batch's version, as for an import.
    assert [(v.version, v.actor) for v in history.entry_versions(stored["1"])][:2] == [
        (2, "token:crm-sync"),
        (1, "editor@example.com"),
    ]
    again = client.post(URL, json=rows, headers=bearer(token))
    assert again.json["unchanged"] == 2 and entries(campaign)["1"].version == 2


def test_ndjson_body_and_fields_left_out_keep_their_values(client, campaign, token):
    client.put(
        "/manage/v1/campaigns/spring/content/7",
        json={"fields": {"message": "Hi", "cta": "Go"}},
        headers=bearer(token),
    )
    body = "\n".join(
        json.dumps(row)
        for row in [{"user_id": "7", "message": "Changed"}, {"user_id": "8", "message": "x"}]
    )
    response = client.post(
        URL, data=body, headers=bearer(token, **{"Content-Type": "application/x-ndjson"})
    )
    assert response.status_code == 200 and response.json["rows"] == 2
    assert entries(campaign)["7"].fields == {"message": "Changed", "cta": "Go"}


def test_one_invalid_row_writes_nothing(client, campaign, token):
    rows = [
        {"user_id": "1", "message": "ok"},
        {"user_id": "2", "message": "x" * 21},
        {"user_id": "3"},
        {"message": "no user"},
        {"user_id": "1", "message": "twice"},
        {"user_id": "5", "message": "Hi", "nope": "x"},
    ]
    response = client.post(URL, json=rows, headers=bearer(token))
    assert response.status_code == 422 and response.json["error"] == "validation_failed"
    by_index = {row["index"]: row for row in response.json["details"]["rows"]}
    assert set(by_index) == {0, 1, 2, 3, 4, 5}
    assert "message" in by_index[1]["errors"] and by_index[1]["user_id"] == "2"
    assert by_index[2]["errors"] == {"message": "A message is required."}
    assert by_index[3]["errors"] == {"body": "'user_id' is a required property"}
    assert by_index[3]["user_id"] is None
    assert "more than once" in by_index[4]["errors"]["user_id"]
    assert by_index[5]["errors"] == {"nope": "Not a field of this campaign."}
    assert entries(campaign) == {}
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == 0


def test_partial_writes_the_valid_rows_and_reports_the_rest(client, campaign, token):
    rows = [{"user_id": "1", "message": "ok"}, {"user_id": "2", "message": "x" * 21}]
    response = client.post(f"{URL}?partial=true", json=rows, headers=bearer(token))
    assert response.status_code == 200
    assert response.json["created"] == 1 and response.json["invalid"] == 1
    assert [row["index"] for row in response.json["errors"]] == [1]
    assert set(entries(campaign)) == {"1"}


def test_batch_limits_and_formats(client, campaign, token):
    too_many = [{"user_id": str(n), "message": "x"} for n in range(10_001)]
    assert client.post(URL, json=too_many, headers=bearer(token)).status_code == 413
    assert client.post(URL, json={"user_id": "1"}, headers=bearer(token)).status_code == 422
    assert client.post(URL, json=[], headers=bearer(token)).status_code == 422
    as_csv = client.post(
        URL, data="user_id\n1\n", headers=bearer(token, **{"Content-Type": "text/csv"})
    )
    assert as_csv.status_code == 415
    bad_flag = client.post(f"{URL}?partial=maybe", json=[{"user_id": "1"}], headers=bearer(token))
    assert bad_flag.status_code == 400
    broken = client.post(
        URL,
        data=b'{"user_id": "1"\n',
        headers=bearer(token, **{"Content-Type": "application/x-ndjson"}),
    )
    assert broken.status_code == 400 and broken.json["error"] == "invalid_json"


def test_ten_thousand_rows_in_one_request(client, campaign, token):
    rows = [{"user_id": str(n), "message": f"m{n}"} for n in range(10_000)]
    response = client.post(URL, json=rows, headers=bearer(token))
    assert response.status_code == 200 and response.json["created"] == 10_000
    assert len(entries(campaign)) == 10_000


NOT_UNICODE = "Not valid Unicode text (an unpaired surrogate)."
JSON = {"Content-Type": "application/json"}
NDJSON = {"Content-Type": "application/x-ndjson"}
# Rows as a client writes them: "\ud800" is a JSON escape, so they are kept as bytes.
POISONED_ROWS = [
    rb'{"user_id": "1", "message": "ok"}',
    rb'{"user_id": "2", "message": "bad \ud800"}',
    rb'{"user_id": "3", "message": "ok", "cta\udfff": "x"}',
    rb'{"user_id": "4\udc00", "message": "ok"}',
    rb'{"user_id": "5", "message": "pair \ud83d\ude00"}',
]


def assert_poisoned_rows_reported(errors: list[dict]) -> None:
    by_index = {row["index"]: row for row in errors}
    assert set(by_index) == {1, 2, 3}
    assert by_index[1]["errors"] == {"message": NOT_UNICODE}
    assert by_index[2]["errors"] == {"cta\\udfff": "Not a field of this campaign."}
    assert by_index[3]["errors"] == {"user_id": NOT_UNICODE}
    assert by_index[3]["user_id"] == "4\\udc00"


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"[" + b",".join(POISONED_ROWS) + b"]", JSON),
        (b"\n".join(POISONED_ROWS) + b"\n", NDJSON),
    ],
)
def test_rows_with_unpaired_surrogates_are_refused_by_index(client, campaign, token, body, headers):
    refused = client.post(URL, data=body, headers=bearer(token, **headers))
    assert refused.status_code == 422, refused.get_data(as_text=True)[:500]
    assert refused.json["error"] == "validation_failed"
    assert_poisoned_rows_reported(refused.json["details"]["rows"])
    refused.get_data().decode("utf-8")
    assert entries(campaign) == {}
    partial = client.post(f"{URL}?partial=true", data=body, headers=bearer(token, **headers))
    assert partial.status_code == 200, partial.get_data(as_text=True)[:500]
    assert partial.json["created"] == 2 and partial.json["invalid"] == 3
    assert_poisoned_rows_reported(partial.json["errors"])
    stored = entries(campaign)
    assert set(stored) == {"1", "5"} and stored["5"].fields == {"message": "pair 😀"}


@pytest.mark.parametrize("depth", [2, 1000, 100_000])
def test_deeply_nested_json_batches_are_refused(client, campaign, token, depth):
    nested = b"[" * depth + b"]" * depth
    body = b'[{"user_id": "1", "message": "ok"}, {"user_id": "2", "message": ' + nested + b"}]"
    refused = client.post(URL, data=body, headers=bearer(token, **JSON))
    assert refused.status_code == 422, refused.get_data(as_text=True)[:500]
    assert refused.json["error"] == "validation_failed"
    assert "nested" in refused.json["message"]
    assert entries(campaign) == {}


def test_a_deeply_nested_ndjson_row_is_refused_naming_its_line(client, campaign, token):
    deep = b'{"user_id": "2", "message": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    body = b'{"user_id": "1", "message": "ok"}\n\n' + deep + b"\n"
    refused = client.post(f"{URL}?partial=true", data=body, headers=bearer(token, **NDJSON))
    assert refused.status_code == 422 and refused.json["error"] == "validation_failed"
    assert "Line 3" in refused.json["message"]
    assert refused.json["details"]["rows"][0]["index"] == 1
    assert entries(campaign) == {}


def test_liquid_brackets_inside_values_are_not_nesting(client, campaign, token):
    rows = [{"user_id": "1", "message": "Hi {{name}} [x]"}, {"user_id": "2", "message": "{{{{"}]
    response = client.post(URL, json=rows, headers=bearer(token))
    assert response.status_code == 200, response.json
    assert entries(campaign)["1"].fields == {"message": "Hi {{name}} [x]"}


@pytest.mark.parametrize(
    ("row", "plain"),
    [
        ({"user_id": "1", "message": "hi"}, True),
        ({"user_id": 7, "message": "hi", "cta": None}, True),
        ({"user_id": True, "message": "hi"}, False),
        ({"user_id": 1.0, "message": "hi"}, False),
        ({"user_id": None, "message": "hi"}, False),
        ({"message": "hi"}, False),
        ({"user_id": "1", "message": 5}, False),
        ({"user_id": "1", "message": ["hi"]}, False),
        ({"user_id": "1", "message": "x" * (MAX_FIELD_LENGTH + 1)}, False),
        ({"user_id": "1", **{f"f{n}": "v" for n in range(MAX_FIELDS + 1)}}, False),
        (["user_id", "1"], False),
    ],
)
def test_the_fast_row_check_accepts_only_rows_the_schema_accepts(row, plain):
    assert schemas.is_plain_batch_row(row) is plain
    if plain:
        assert schemas.validate(schemas.BATCH_ROW, row) == {}
