"""Streamed imports through the API: stored by the request, staged and applied by a job."""

from __future__ import annotations

import json

import pytest
from common.manage_support import SCHEMA, bearer, make_token
from common.publishing_support import make_campaign, publish_pending, stored_entry
from common.support import wait_until
from rq.job import Job, JobStatus
from sqlalchemy import func, select, update

from ccadmin import keys
from ccadmin.extensions import db
from ccadmin.imports import bulk, uploads
from ccadmin.models import ContentEntry, ContentImport, ImportRow
from ccadmin.models.imports import ImportChunk
from workers.imports import ingest_import
from workers.sweeper import requeue_ingests

URL = "/manage/v1/campaigns/spring/imports"
CSV = {"Content-Type": "text/csv"}
NDJSON = {"Content-Type": "application/x-ndjson"}
WORKER = ["-m", "workers"]


@pytest.fixture
def token(app) -> str:
    make_campaign("spring", field_schema=SCHEMA)
    return make_token()


def chunks(import_id: int) -> int:
    return db.session.execute(
        select(func.count()).where(ImportChunk.import_id == import_id)
    ).scalar_one()


def poll(client, token: str, location: str) -> dict:
    db.session.expire_all()  # requests share the test's session: see the job's commits
    return client.get(location, headers=bearer(token)).json


def test_the_request_stores_the_body_and_the_job_stages_applies_and_publishes(
    app, client, token, redis_client
):
    # The app's own body limit does not apply to imports ("any size").
    app.config["MAX_CONTENT_LENGTH"] = 1024
    body = "user_id,message,cta\n" + "".join(f"{n},Hello {n},Go\n" for n in range(1, 501))
    response = client.post(URL, data=body, headers=bearer(token, **CSV))
    assert response.status_code == 202, response.json
    state = response.json
    assert state["status"] == "received" and state["rows"]["total"] == 0
    assert state["progress"]["received_bytes"] == len(body)
    assert chunks(state["id"]) == 1 and db.session.scalar(select(func.count(ImportRow.line))) == 0
    job = Job.fetch(f"import-{state['id']}", connection=redis_client)
    assert (job.func_name, job.args, job.origin) == (
        keys.JOB_INGEST_IMPORT,
        (state["id"],),
        keys.IMPORT_QUEUE,
    )
    location = response.headers["Location"]
    assert location.endswith(f"/imports/{state['id']}")

    ingest_import(state["id"])
    # 500 rows are one small batch: the fresh lane's drainers are woken.
    assert redis_client.lrange(keys.PUBLISH_WAKE, 0, -1) == [b"1"]
    publish_pending()
    done = poll(client, token, location)
    assert done["status"] == "applied" and done["rows"]["new"] == 500
    assert (done["progress"]["written"], done["progress"]["live"]) == (500, True)
    assert chunks(state["id"]) == 0
    assert stored_entry(redis_client, "spring", "500")[0] == 1
    entry = db.session.scalars(select(ContentEntry).where(ContentEntry.user_id == "7")).one()
    assert entry.fields == {"message": "Hello 7", "cta": "Go"}
    assert entry.updated_by == "token:crm-sync"


def test_a_body_of_many_chunks_is_read_back_across_their_boundaries(client, token, monkeypatch):
    monkeypatch.setattr(uploads, "CHUNK_BYTES", 100)
    rows = [{"user_id": str(n), "message": f"Hi {n} ünïcode"} for n in range(1, 201)]
    body = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
    created = client.post(URL, data=body, headers=bearer(token, **NDJSON)).json
    assert chunks(created["id"]) == len(body) // 100 + 1
    ingest_import(created["id"])
    db.session.expire_all()
    stored = dict(db.session.execute(select(ContentEntry.user_id, ContentEntry.fields)).all())
    assert len(stored) == 200 and stored["137"] == {"message": "Hi 137 ünïcode"}


def test_invalid_rows_are_reported_and_apply_nothing_unless_partial(client, token):
    rows = [{"user_id": "1", "message": "ok"}, {"user_id": "2", "message": "x" * 21}]
    body = "\n".join(json.dumps(row) for row in rows) + "\n"
    refused = client.post(URL, data=body, headers=bearer(token, **NDJSON))
    assert refused.status_code == 202
    ingest_import(refused.json["id"])
    state = poll(client, token, refused.headers["Location"])
    assert state["status"] == "ready" and state["rows"]["invalid"] == 1
    assert state["errors"]["rows"][0]["line"] == 2
    assert "message" in state["errors"]["rows"][0]["reason"]
    assert db.session.scalars(select(ContentEntry.user_id)).all() == []

    partial = client.post(f"{URL}?partial=true", data=body, headers=bearer(token, **NDJSON))
    assert partial.status_code == 202 and partial.json["mode"] == "valid_only"
    ingest_import(partial.json["id"])
    assert poll(client, token, partial.headers["Location"])["status"] == "applied"
    assert db.session.scalars(select(ContentEntry.user_id)).all() == ["1"]


def test_unreadable_bodies_and_wrong_types(client, token):
    no_user_column = client.post(URL, data="message\nhi\n", headers=bearer(token, **CSV))
    assert no_user_column.status_code == 202
    ingest_import(no_user_column.json["id"])
    state = poll(client, token, no_user_column.headers["Location"])
    assert state["status"] == "invalid" and "user_id" in state["errors"]["file"][0]
    assert chunks(state["id"]) == 0
    as_json = client.post(URL, json=[{"user_id": "1"}], headers=bearer(token))
    assert as_json.status_code == 415


def test_staging_again_after_a_job_died_replaces_what_it_had_staged(client, token):
    created = client.post(
        URL, data="user_id,message\n1,one\n2,two\n", headers=bearer(token, **CSV)
    ).json
    # What a worker killed mid-staging leaves: staging, some rows staged, the chunks.
    bulk.insert_import_rows(
        [{"import_id": created["id"], "line": 9, "user_id": "9", "outcome": "new", "delete": False}]
    )
    db.session.execute(
        update(ContentImport).where(ContentImport.id == created["id"]).values(status="staging")
    )
    db.session.commit()
    ingest_import(created["id"])
    state = poll(client, token, f"{URL}/{created['id']}")
    assert state["status"] == "applied" and state["rows"]["total"] == 2
    assert db.session.scalars(select(ContentEntry.user_id).order_by("user_id")).all() == [
        "1",
        "2",
    ]
    # A second run (a duplicate job) finds nothing waiting and changes nothing.
    assert ingest_import(created["id"])["skipped"]


def test_the_sweeper_requeues_a_stored_body_whose_job_was_lost(client, token, redis_client):
    created = client.post(URL, data="user_id,message\n1,one\n", headers=bearer(token, **CSV)).json
    assert requeue_ingests(redis_client, older_than=0) == []  # its job is queued
    Job.fetch(f"import-{created['id']}", connection=redis_client).delete()
    assert requeue_ingests(redis_client, older_than=0) == [created["id"]]
    assert Job.fetch(f"import-{created['id']}", connection=redis_client).get_status() == "queued"


def test_the_sweeper_rechecks_its_list_before_it_requeues(client, token, redis_client, monkeypatch):
    created = client.post(URL, data="user_id,message\n1,one\n", headers=bearer(token, **CSV)).json
    stale = uploads.waiting_ingests(0, 10)
    assert [item.id for item in stale] == [created["id"]]
    # Since the list was read: staging finished and left the change set previewed.
    db.session.execute(
        update(ContentImport).where(ContentImport.id == created["id"]).values(status="ready")
    )
    db.session.commit()
    job = Job.fetch(f"import-{created['id']}", connection=redis_client)
    job.set_status(JobStatus.FINISHED)
    monkeypatch.setattr(uploads, "waiting_ingests", lambda older_than, limit: stale)
    assert requeue_ingests(redis_client, older_than=0) == []
    assert Job.fetch(job.id, connection=redis_client).get_status() == "finished"


def test_a_real_worker_stages_and_applies_with_progress(client, token, redis_client, spawn):
    body = "user_id,message\n" + "".join(f"{n},Hello {n}\n" for n in range(1, 1001))
    created = client.post(URL, data=body, headers=bearer(token, **CSV))
    spawn(WORKER)
    location = created.headers["Location"]
    state = wait_until(lambda: (s := poll(client, token, location))["progress"]["live"] and s, 30)
    assert state["status"] == "applied" and state["progress"]["percent"] == 100
    assert (state["progress"]["done"], state["progress"]["total"]) == (1000, 1000)
    assert wait_until(lambda: stored_entry(redis_client, "spring", "1000"), 10)[0] == 1


def test_import_status_is_scoped_to_its_campaign(client, token):
    make_campaign("autumn", is_default=False, field_schema=SCHEMA)
    created = client.post(URL, data="user_id,message\n1,hi\n", headers=bearer(token, **CSV))
    import_id = created.json["id"]
    other = client.get(f"/manage/v1/campaigns/autumn/imports/{import_id}", headers=bearer(token))
    assert other.status_code == 404 and other.json["error"] == "import_not_found"
    reader = make_token("limited", campaigns=["autumn"])
    assert client.get(f"{URL}/{import_id}", headers=bearer(reader)).status_code == 403


NOT_UNICODE = "Not valid Unicode text (an unpaired surrogate)."


def test_ndjson_rows_with_unpaired_surrogates_or_deep_nesting_are_invalid_by_line(client, token):
    body = b"\n".join(
        [
            rb'{"user_id": "1", "message": "ok"}',
            rb'{"user_id": "2", "message": "bad \ud800"}',
            rb'{"user_id": "3", "message": "ok", "cta\udfff": "x"}',
            rb'{"user_id": "4\udc00", "message": "ok"}',
            b'{"user_id": "5", "message": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            rb'{"user_id": "6", "message": {"a": "b"}}',
        ]
    )
    response = client.post(
        f"{URL}?partial=true", data=body + b"\n", headers=bearer(token, **NDJSON)
    )
    assert response.status_code == 202
    ingest_import(response.json["id"])
    state = poll(client, token, response.headers["Location"])
    assert state["status"] == "applied", state
    reasons = {row["line"]: (row["user_id"], row["reason"]) for row in state["errors"]["rows"]}
    assert reasons[2] == ("2", f"message: {NOT_UNICODE}")
    assert reasons[3] == ("3", "cta\\udfff: Not a field of this campaign.")
    assert reasons[4] == ("4\\udc00", f"user_id: {NOT_UNICODE}")
    assert reasons[5][1].startswith("Nested deeper than a row allows")
    assert reasons[6][1].startswith("Nested deeper than a row allows")
    assert set(reasons) == {2, 3, 4, 5, 6}
    db.session.expire_all()
    assert db.session.scalars(select(ContentEntry.user_id)).all() == ["1"]


def test_a_csv_body_with_an_encoded_surrogate_is_refused_naming_its_line(client, token):
    body = b"user_id,message\n1,ok\n2,bad \xed\xa0\x80\n"
    response = client.post(URL, data=body, headers=bearer(token, **CSV))
    assert response.status_code == 202
    ingest_import(response.json["id"])
    state = poll(client, token, response.headers["Location"])
    assert state["status"] == "invalid"
    assert state["errors"]["file"] == [
        'Line 3 is not valid UTF-8 text. Save the file as "CSV UTF-8" (or UTF-8 JSON lines) '
        "and upload it again."
    ]
    assert db.session.scalars(select(ContentEntry.user_id)).all() == []
