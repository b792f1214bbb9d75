"""Streamed imports through the API: staged by the import pipeline, applied by its job."""

from __future__ import annotations

import json

import pytest
from manage_support import SCHEMA, bearer, make_token
from publishing_support import make_campaign, stored_entry
from sqlalchemy import select

from ccadmin.extensions import db
from ccadmin.models import ContentEntry
from workers.imports import apply_import

URL = "/manage/v1/campaigns/spring/imports"
CSV = {"Content-Type": "text/csv"}
NDJSON = {"Content-Type": "application/x-ndjson"}


@pytest.fixture
def token(app) -> str:
    make_campaign("spring", field_schema=SCHEMA)
    return make_token()


def test_a_csv_body_is_validated_queued_applied_and_published(app, client, token, redis_client):
    # The app's own body limit does not apply to imports ("any size").
    app.config["MAX_CONTENT_LENGTH"] = 1024
    body = "user_id,message,cta\n" + "".join(f"{n},Hello {n},Go\n" for n in range(1, 501))
    response = client.post(URL, data=body, headers=bearer(token, **CSV))
    assert response.status_code == 202, response.json
    state = response.json
    assert state["status"] == "queued" and state["rows"]["new"] == 500
    location = response.headers["Location"]
    assert location.endswith(f"/imports/{state['id']}")
    apply_import(state["id"])
    done = client.get(location, headers=bearer(token)).json
    assert done["status"] == "applied" and done["progress"]["written"] == 500
    assert done["progress"]["live"] is True
    assert stored_entry(redis_client, "spring", "500")[0] == 1
    entry = db.session.scalars(select(ContentEntry).where(ContentEntry.user_id == "7")).one()
    assert entry.fields == {"message": "Hello 7", "cta": "Go"}
    assert entry.updated_by == "token:crm-sync"


def test_invalid_rows_apply_nothing_unless_partial(client, token):
    rows = [{"user_id": "1", "message": "ok"}, {"user_id": "2", "message": "x" * 21}]
    body = "\n".join(json.dumps(row) for row in rows) + "\n"
    refused = client.post(URL, data=body, headers=bearer(token, **NDJSON))
    assert refused.status_code == 422
    assert refused.json["status"] == "ready" and refused.json["rows"]["invalid"] == 1
    assert refused.json["errors"]["rows"][0]["line"] == 2
    assert "message" in refused.json["errors"]["rows"][0]["reason"]
    partial = client.post(f"{URL}?partial=true", data=body, headers=bearer(token, **NDJSON))
    assert partial.status_code == 202 and partial.json["mode"] == "valid_only"
    apply_import(partial.json["id"])
    assert db.session.scalars(select(ContentEntry.user_id)).all() == ["1"]


def test_unreadable_bodies_and_wrong_types(client, token):
    no_user_column = client.post(URL, data="message\nhi\n", headers=bearer(token, **CSV))
    assert no_user_column.status_code == 422
    assert no_user_column.json["status"] == "invalid"
    assert "user_id" in no_user_column.json["errors"]["file"][0]
    as_json = client.post(URL, json=[{"user_id": "1"}], headers=bearer(token))
    assert as_json.status_code == 415


def test_import_status_is_scoped_to_its_campaign(client, token):
    make_campaign("autumn", is_default=False, field_schema=SCHEMA)
    created = client.post(URL, data="user_id,message\n1,hi\n", headers=bearer(token, **CSV))
    import_id = created.json["id"]
    other = client.get(f"/manage/v1/campaigns/autumn/imports/{import_id}", headers=bearer(token))
    assert other.status_code == 404 and other.json["error"] == "import_not_found"
    reader = make_token("limited", campaigns=["autumn"])
    assert client.get(f"{URL}/{import_id}", headers=bearer(reader)).status_code == 403
