"""Import preview: counts, invalid rows and diffs for crafted files, and every kind of bad file."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from common.import_support import (
    IMPORTS,
    SCHEMA,
    apply_refused,
    entries,
    latest_import,
    run_staging,
    shown_counts,
    upload,
)
from common.publishing_support import make_campaign
from common.support import csrf_token, login
from rq.job import Job
from sqlalchemy import func, select, update

from ccadmin import keys, publishing
from ccadmin.extensions import db
from ccadmin.imports import changesets, uploads
from ccadmin.imports.progress import redis_connection
from ccadmin.models import ContentEntry, ContentImport, ImportRow, OutboxEvent
from ccadmin.models.imports import ImportChunk
from ccadmin.models.types import utcnow
from workers.sweeper import drop_abandoned_uploads


@pytest.fixture
def campaign(app):
    campaign = make_campaign("spring", field_schema=SCHEMA)
    for user_id, fields in (("1", {"message": "old"}), ("2", {"message": "same", "cta": "Go"})):
        entry = ContentEntry(campaign_id=campaign.id, user_id=user_id, fields=fields)
        publishing.record_content_change(entry, "seed", "create", None)
    db.session.commit()
    return campaign


@pytest.fixture
def editor(client, make_user, campaign):
    make_user("ed@example.com", role="editor")
    login(client, "ed@example.com")
    return client


def outbox_count() -> int:
    return db.session.execute(select(func.count()).select_from(OutboxEvent)).scalar_one()


def chunk_count(import_id: int) -> int:
    return db.session.execute(
        select(func.count()).where(ImportChunk.import_id == import_id)
    ).scalar_one()


def preview(client, campaign, filename: str, content: bytes) -> tuple[str, object]:
    """Upload, run the staging job, follow to the preview; returns (page, import)."""
    response = upload(client, campaign.id, filename, content)
    assert response.status_code == 302, response.get_data(as_text=True)
    run_staging(latest_import().id)
    page = client.get(response.headers["Location"])
    assert page.status_code == 200
    return page.get_data(as_text=True), latest_import()


def test_the_upload_only_stores_the_file_and_the_page_follows_its_staging(editor, campaign):
    before = outbox_count()
    content = b"user_id,message\n1,new text\n3,x\n"
    response = upload(editor, campaign.id, "spring.csv", content)
    assert response.status_code == 302
    content_import = latest_import()
    assert response.headers["Location"].endswith(f"{IMPORTS}{content_import.id}/")
    assert (content_import.status, content_import.upload_format) == ("received", "csv")
    assert content_import.upload_bytes == len(content) and not content_import.apply_when_staged
    assert chunk_count(content_import.id) == 1
    assert db.session.execute(select(func.count()).select_from(ImportRow)).scalar_one() == 0
    job = Job.fetch(content_import.job_id, connection=redis_connection())
    assert (job.func_name, job.args, job.origin) == (
        keys.JOB_INGEST_IMPORT,
        (content_import.id,),
        keys.IMPORT_QUEUE,
    )
    page = editor.get(response.headers["Location"]).get_data(as_text=True)
    assert "Staging…" in page and 'data-phase="staging"' in page
    assert 'data-running="true"' in page and "import-progress.js" in page
    assert 'id="apply-form"' not in page and 'id="import-counts"' not in page
    state = editor.get(f"{IMPORTS}{content_import.id}/status").get_json()
    assert state["staging"] is True and state["received_bytes"] == len(content)

    run_staging(content_import.id)
    state = editor.get(f"{IMPORTS}{content_import.id}/status").get_json()
    assert (state["status"], state["staging"]) == ("ready", False)
    page = editor.get(response.headers["Location"]).get_data(as_text=True)
    assert shown_counts(page) == {"total": 2, "new": 1, "changed": 1, "unchanged": 0, "invalid": 0}
    assert 'id="apply-form"' in page and "Staging…" not in page
    # Staged, not applied: the marketer confirms the preview first.
    assert chunk_count(content_import.id) == 0
    assert outbox_count() == before and entries(campaign.id)["1"].fields == {"message": "old"}


def test_the_sweeper_deletes_uploads_that_never_arrived_whole(editor, campaign):
    def stored(status: str, age: timedelta) -> ContentImport:
        content_import = changesets.new_import(campaign, "a.csv", "ed", status=status)
        uploads.store_body(content_import, io.BytesIO(b"user_id,message\n1,x\n"))
        db.session.execute(
            update(ContentImport)
            .where(ContentImport.id == content_import.id)
            .values(created_at=utcnow() - age, received_at=utcnow() - age)
        )
        db.session.commit()
        return content_import

    abandoned = stored("receiving", timedelta(hours=2))
    arriving = stored("receiving", timedelta(minutes=5))
    waiting = stored("received", timedelta(hours=2))
    abandoned_id = abandoned.id
    assert drop_abandoned_uploads() == [abandoned_id]
    db.session.expire_all()
    assert db.session.get(ContentImport, abandoned_id) is None
    assert chunk_count(abandoned_id) == 0
    assert chunk_count(arriving.id) == 1 and chunk_count(waiting.id) == 1
    assert {item.status for item in db.session.scalars(select(ContentImport))} == {
        "receiving",
        "received",
    }
    assert drop_abandoned_uploads() == []


def test_csv_preview_counts_invalid_rows_and_diffs(editor, campaign):
    before = outbox_count()
    content = (
        b"user_id,message\n"
        b"1,new text\n"  # changed
        b"2,same\n"  # unchanged: cta is not in the file, so it is kept
        b"3,brand new\n"  # new
        b"4,\n"  # invalid: the message is required
        b"5,this message is much too long\n"  # invalid: 29 > 20
        b' 6 ,"quoted, with comma"\n'  # new; the user id is trimmed
    )
    page, content_import = preview(editor, campaign, "spring.csv", content)
    assert content_import.status == "ready"
    assert shown_counts(page) == {
        "total": 6,
        "new": 2,
        "changed": 1,
        "unchanged": 1,
        "invalid": 2,
    }
    assert [(row["line"], row["user_id"]) for row in content_import.report["invalid"]] == [
        (5, "4"),
        (6, "5"),
    ]
    assert "A message is required." in page
    assert "Too long: 29 characters, at most 20." in page
    assert content_import.report["diffs"] == [
        {
            "line": 2,
            "user_id": "1",
            "changes": [{"field": "message", "before": "old", "after": "new text"}],
        }
    ]
    assert "<del>old</del>" in page and "<ins>new text</ins>" in page
    staged = {
        row.user_id: row.fields
        for row in db.session.scalars(
            select(ImportRow).where(ImportRow.import_id == content_import.id)
        )
    }
    assert staged["2"] == {"message": "same", "cta": "Go"}
    assert staged["6"] == {"message": "quoted, with comma"}
    # A preview changes nothing.
    assert outbox_count() == before
    assert {user: entry.version for user, entry in entries(campaign.id).items()} == {"1": 1, "2": 1}


def test_json_lines_preview(editor, campaign):
    lines = [
        {"user_id": 1, "message": "from json", "cta": "Buy"},
        {"user_id": "7", "message": "new"},
        {"user_id": "8", "message": 5},
        {"user_id": "9", "message": "x", "colour": "red"},
        ["not", "an", "object"],
    ]
    content = "\n".join(json.dumps(line) for line in lines).encode() + b"\n{bad json}\n"
    page, content_import = preview(editor, campaign, "spring.jsonl", content)
    assert shown_counts(page)["new"] == 1
    assert shown_counts(page)["changed"] == 1
    reasons = {row["line"]: row["reason"] for row in content_import.report["invalid"]}
    assert reasons == {
        3: "message: must be text.",
        4: "colour: Not a field of this campaign.",
        5: "Each line must be a JSON object.",
        6: "Not valid JSON.",
    }


def test_duplicated_user_ids_are_invalid_and_block_all_or_nothing(editor, campaign):
    page, content_import = preview(
        editor, campaign, "dup.csv", b"user_id,message\n10,a\n11,b\n10,c\n"
    )
    assert shown_counts(page)["invalid"] == 2
    assert "appears more than once (lines 2, 4)" in page
    response = apply_refused(editor, content_import.id, "all_or_nothing")
    assert response.status_code == 302
    assert "2 rows are invalid" in editor.get(response.headers["Location"]).get_data(as_text=True)
    assert latest_import().status == "ready"
    assert "10" not in entries(campaign.id)


@pytest.mark.parametrize(
    ("filename", "content", "expected"),
    [
        (
            "latin1.csv",
            "user_id,message\n1,caf\xe9\n".encode("latin-1"),
            "Line 2 is not valid UTF-8",
        ),
        ("nouser.csv", b"id,message\n1,hello\n", "including 'user_id'"),
        ("unknown.csv", b"user_id,message,colour\n1,hi,red\n", "'colour' is not a field"),
        ("twice.csv", b"user_id,message,message\n1,a,b\n", "appears twice"),
        ("empty.csv", b"", "The file is empty."),
        ("header.csv", b"user_id,message\n", "a header but no rows"),
        ("cut.csv", b"user_id,message,cta\n1,hello,Go\n2,hel", "the file looks truncated"),
        ("quote.csv", b'user_id,message\n1,hello\n2,"unfinished', "the last line is truncated"),
        ("cut.jsonl", b'{"user_id": "1", "message": "a"}\n{"user_id": "2", "mess', "truncated"),
        ("huge.csv", b"user_id,message\n1," + b"x" * (1024 * 1024 + 10) + b"\n", "longer than"),
    ],
)
def test_bad_files_get_a_clear_report_and_apply_nothing(
    editor, campaign, filename, content, expected
):
    before = outbox_count()
    page, content_import = preview(editor, campaign, filename, content)
    assert content_import.status == "invalid"
    assert expected in " ".join(content_import.report["file_errors"])
    assert 'class="alert alert-danger file-error"' in page
    assert 'id="apply-form"' not in page
    assert (
        db.session.execute(
            select(func.count()).where(ImportRow.import_id == content_import.id)
        ).scalar_one()
        == 0
    )
    response = apply_refused(editor, content_import.id, "valid_only")
    assert response.status_code == 302
    assert latest_import().status == "invalid"
    assert outbox_count() == before


def test_oversized_field_is_an_invalid_row(editor, campaign):
    page, content_import = preview(
        editor, campaign, "long.csv", ("user_id,message,cta\n1,ok,%s\n" % ("y" * 5000)).encode()
    )
    assert content_import.report["invalid"] == [
        {"line": 2, "user_id": "1", "reason": "cta: Too long: 5000 characters, at most 10."}
    ]


def test_viewers_read_but_cannot_upload(client, make_user, campaign):
    make_user("vi@example.com", role="viewer")
    login(client, "vi@example.com")
    page = client.get(IMPORTS)
    assert page.status_code == 200
    assert 'id="import-upload"' not in page.get_data(as_text=True)
    response = upload(client, campaign.id, "a.csv", b"user_id,message\n1,x\n", token="x")
    assert response.status_code == 403
    assert latest_import() is None


def test_upload_needs_the_csrf_token(editor, campaign):
    response = upload(editor, campaign.id, "a.csv", b"user_id,message\n1,x\n", token="forged")
    assert response.status_code == 400
    assert latest_import() is None


# Over the request's limit (refused while parsing), or only over the file's.
@pytest.mark.parametrize("rows", [600_000, 400])
def test_oversized_upload_is_refused_without_an_error_page(editor, campaign, app, rows):
    from ccadmin.admin import imports

    limit = imports.MAX_UPLOAD_BYTES
    imports.MAX_UPLOAD_BYTES = 1000
    try:
        response = upload(editor, campaign.id, "big.csv", b"user_id,message\n" + b"1,x\n" * rows)
    finally:
        imports.MAX_UPLOAD_BYTES = limit
    assert response.status_code == 302
    assert "larger than" in editor.get(IMPORTS).get_data(as_text=True)
    assert latest_import() is None


def test_a_previewed_import_can_be_discarded(editor, campaign):
    _, content_import = preview(editor, campaign, "a.csv", b"user_id,message\n1,x\n2,y\n")
    url = f"{IMPORTS}{content_import.id}/"
    token = csrf_token(editor, url)
    response = editor.post(f"{url}discard", data={"csrf_token": token})
    assert response.status_code == 302
    assert latest_import() is None
    assert db.session.execute(select(func.count()).select_from(ImportRow)).scalar_one() == 0


def test_unpaired_surrogates_and_deep_nesting_are_invalid_rows(editor, campaign):
    content = b"\n".join(
        [
            rb'{"user_id": "20", "message": "ok"}',
            rb'{"user_id": "21", "message": "bad \ud800"}',
            rb'{"user_id": "22\udc00", "message": "ok"}',
            b'{"user_id": "23", "message": ' + b"[" * 3000 + b"]" * 3000 + b"}",
        ]
    )
    page, content_import = preview(editor, campaign, "poison.jsonl", content + b"\n")
    assert content_import.status == "ready"
    reasons = {
        row["line"]: (row["user_id"], row["reason"]) for row in content_import.report["invalid"]
    }
    assert reasons == {
        2: ("21", "message: Not valid Unicode text (an unpaired surrogate)."),
        3: ("22\\udc00", "user_id: Not valid Unicode text (an unpaired surrogate)."),
        4: (None, "Nested deeper than a row allows: values must be text, not arrays or objects."),
    }
    assert shown_counts(page)["invalid"] == 3 and shown_counts(page)["new"] == 1
