"""`Idempotency-Key`: a retry of a write gets its first answer and writes nothing again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from common.manage_support import SCHEMA, bearer, make_token
from common.publishing_support import make_campaign
from sqlalchemy import func, select, update

from ccadmin.extensions import db
from ccadmin.models import ContentEntry, ContentImport, IdempotentRequest, OutboxEvent
from ccadmin.models.idempotency import forget_expired
from ccadmin.models.types import utcnow

URL = "/manage/v1/campaigns/spring/content/42"
BATCH = "/manage/v1/campaigns/spring/content:batch"


@pytest.fixture
def token(app) -> str:
    make_campaign("spring", field_schema=SCHEMA)
    return make_token()


def keyed(token: str, key: str, **extra: str) -> dict[str, str]:
    return bearer(token, **{"Idempotency-Key": key, **extra})


def versions() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(OutboxEvent))


def test_a_retried_delete_answers_204_again_instead_of_404(client, token):
    client.put(URL, json={"fields": {"message": "Hi"}}, headers=bearer(token))
    first = client.delete(URL, headers=keyed(token, "del-1"))
    assert first.status_code == 204 and "Idempotent-Replayed" not in first.headers
    retry = client.delete(URL, headers=keyed(token, "del-1"))
    assert retry.status_code == 204 and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.headers["ETag"] == first.headers["ETag"]
    # Without the key the same retry is a plain second delete.
    assert client.delete(URL, headers=bearer(token)).status_code == 404


def test_a_late_retry_does_not_overwrite_a_newer_write(client, token):
    first = client.put(URL, json={"fields": {"message": "A"}}, headers=keyed(token, "put-a"))
    assert first.status_code == 201 and first.json["version"] == 1
    newer = client.put(URL, json={"fields": {"message": "B"}}, headers=bearer(token))
    assert newer.json["version"] == 2
    events = versions()
    retry = client.put(URL, json={"fields": {"message": "A"}}, headers=keyed(token, "put-a"))
    assert (retry.status_code, retry.json, retry.headers["Location"]) == (
        201,
        first.json,
        first.headers["Location"],
    )
    assert versions() == events
    assert client.get(URL, headers=bearer(token)).json["fields"] == {"message": "B"}


def test_a_retried_batch_is_applied_once(client, token):
    rows = [{"user_id": str(n), "message": f"Hi {n}"} for n in range(5)]
    first = client.post(BATCH, json=rows, headers=keyed(token, "batch-1"))
    assert first.status_code == 200, first.json
    client.put(
        "/manage/v1/campaigns/spring/content/3",
        json={"fields": {"message": "New"}},
        headers=bearer(token),
    )
    retry = client.post(BATCH, json=rows, headers=keyed(token, "batch-1"))
    assert retry.json == first.json and retry.headers["Idempotent-Replayed"] == "true"
    entry = db.session.scalars(select(ContentEntry).where(ContentEntry.user_id == "3")).one()
    assert entry.fields == {"message": "New"}


def test_a_retried_import_is_stored_once(client, token):
    body = "user_id,message\n1,Hi\n2,Hello\n"
    headers = keyed(token, "import-1", **{"Content-Type": "text/csv"})
    first = client.post("/manage/v1/campaigns/spring/imports", data=body, headers=headers)
    retry = client.post("/manage/v1/campaigns/spring/imports", data=body, headers=headers)
    assert first.status_code == retry.status_code == 202
    assert retry.headers["Location"] == first.headers["Location"]
    assert db.session.scalar(select(func.count()).select_from(ContentImport)) == 1


def test_a_key_reused_for_another_request_is_refused(client, token):
    client.put(URL, json={"fields": {"message": "A"}}, headers=keyed(token, "k"))
    other = client.put(URL, json={"fields": {"message": "B"}}, headers=keyed(token, "k"))
    assert other.status_code == 422 and other.json["error"] == "idempotency_key_reused"
    elsewhere = client.delete(URL, headers=keyed(token, "k"))
    assert elsewhere.status_code == 422
    assert client.get(URL, headers=bearer(token)).json["fields"] == {"message": "A"}


def test_a_refused_request_does_not_use_up_its_key(client, token):
    bad = client.put(URL, json={"fields": {"message": "x" * 50}}, headers=keyed(token, "k"))
    assert bad.status_code == 422 and bad.json["error"] == "validation_failed"
    good = client.put(URL, json={"fields": {"message": "ok"}}, headers=keyed(token, "k"))
    assert good.status_code == 201
    assert db.session.scalar(select(func.count()).select_from(IdempotentRequest)) == 1


@pytest.mark.parametrize("key", ["", "has space", "é", "x" * 256])
def test_a_malformed_key_is_a_400(client, token, key):
    answer = client.put(URL, json={"fields": {"message": "A"}}, headers=keyed(token, key))
    assert answer.status_code == 400 and answer.json["error"] == "bad_request"
    assert db.session.scalar(select(func.count()).select_from(ContentEntry)) == 0


def test_keys_belong_to_one_token_and_expire(client, token):
    other = make_token("other-system")
    assert (
        client.put(URL, json={"fields": {"message": "A"}}, headers=keyed(token, "k")).status_code
        == 201
    )
    theirs = client.put(URL, json={"fields": {"message": "B"}}, headers=keyed(other, "k"))
    assert theirs.status_code == 200 and "Idempotent-Replayed" not in theirs.headers
    db.session.execute(update(IdempotentRequest).values(created_at=utcnow() - timedelta(hours=25)))
    db.session.commit()
    assert forget_expired() == 2
    again = client.put(URL, json={"fields": {"message": "A"}}, headers=keyed(token, "k"))
    assert again.status_code == 200 and again.json["version"] == 3


def test_the_contract_documents_the_header(client):
    document = client.get("/manage/v1/openapi.json").json
    delete = document["paths"]["/manage/v1/campaigns/{slug}/content/{user_id}"]["delete"]
    assert "Idempotency-Key" in [parameter["name"] for parameter in delete["parameters"]]
    assert {"409", "422"} <= set(delete["responses"])
