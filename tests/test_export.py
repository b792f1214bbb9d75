"""The campaign CSV export: streamed, same columns as import, and a round trip changes nothing."""

from __future__ import annotations

import csv
import io

import pytest
from common.import_support import IMPORTS, latest_import, run_staging, upload
from common.publishing_support import make_campaign
from common.support import login

from ccadmin import publishing
from ccadmin.extensions import db
from ccadmin.imports import export
from ccadmin.models import ContentEntry

SCHEMA = [{"name": "message", "max_length": 140}, {"name": "cta", "max_length": 40}]
AWKWARD = {
    "1": {"message": "plain"},
    "2": {"message": 'comma, "quotes" and\nnew line', "cta": "Shop"},
    "3": {"message": "ünïcödé ✓ and emoji 🎉", "cta": "=SUM(A1)"},
    "x y": {"message": "  leading spaces kept", "cta": "tab\there"},
    # What a spreadsheet would run as a formula, and a value that looks guarded.
    "=HYPERLINK(1)": {"message": '=HYPERLINK("http://evil.example","x")', "cta": "+cmd"},
    "f2": {"message": "-1+1", "cta": "@SUM(1)"},
    "f3": {"message": "\tstarts with a tab", "cta": "'=already quoted"},
}
# Cells that must never reach a spreadsheet as they are.
FORMULAS = ("=", "+", "-", "@", "\t", "\r")


@pytest.fixture
def campaign(app):
    campaign = make_campaign("spring", field_schema=SCHEMA)
    other = make_campaign("other", is_default=False)
    for user_id, fields in AWKWARD.items():
        entry = ContentEntry(campaign_id=campaign.id, user_id=user_id, fields=fields)
        publishing.record_content_change(entry, "seed", "create", None)
    gone = ContentEntry(campaign_id=campaign.id, user_id="gone", fields={"message": "bye"})
    publishing.record_content_change(gone, "seed", "create", None)
    db.session.flush()
    publishing.record_content_change(gone, "seed", "delete", publishing.entry_snapshot(gone))
    elsewhere = ContentEntry(campaign_id=other.id, user_id="1", fields={"message": "other"})
    publishing.record_content_change(elsewhere, "seed", "create", None)
    db.session.commit()
    return campaign


def test_export_streams_the_campaign_in_import_columns(client, make_user, campaign):
    make_user("vi@example.com", role="viewer")
    login(client, "vi@example.com")
    response = client.get(f"{IMPORTS}export/{campaign.id}.csv")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    assert 'filename="spring-content.csv"' in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["user_id", "message", "cta"]
    exported = {row[0]: {"message": row[1], "cta": row[2]} for row in rows[1:]}
    assert len(exported) == len(AWKWARD)  # no tombstone, no other campaign
    assert exported["2"] == AWKWARD["2"]
    assert exported["1"] == {"message": "plain", "cta": ""}
    # Formula-like cells go out behind a quote (OWASP), and come back unchanged below.
    assert exported["'=HYPERLINK(1)"]["cta"] == "'+cmd"
    assert exported["f3"] == {"message": "'\tstarts with a tab", "cta": "''=already quoted"}
    assert not any(cell.startswith(FORMULAS) for row in rows for cell in row)


def test_export_pages_through_entries(app, campaign, monkeypatch):
    monkeypatch.setattr(export, "EXPORT_CHUNK", 2)
    chunks = list(export.export_csv(campaign.id, ["message", "cta"]))
    # The header, then pages of two entries.
    assert len(chunks) == 1 + (len(AWKWARD) + 1) // 2
    assert sum(chunk.count("\r\n") for chunk in chunks) >= 5


def test_export_then_import_changes_nothing(client, make_user, campaign):
    make_user("ed@example.com", role="editor")
    login(client, "ed@example.com")
    exported = client.get(f"{IMPORTS}export/{campaign.id}.csv").get_data()
    response = upload(client, campaign.id, "spring-content.csv", exported)
    assert response.status_code == 302
    content_import = run_staging(latest_import().id)
    assert content_import.status == "ready", content_import.report
    assert (
        content_import.total_rows,
        content_import.unchanged_rows,
        content_import.new_rows,
        content_import.changed_rows,
        content_import.invalid_rows,
    ) == (len(AWKWARD), len(AWKWARD), 0, 0, 0)


@pytest.mark.parametrize("path", ["/admin/content/export/csv/", "/admin/campaigns/export/csv/"])
def test_list_exports_guard_formulas(client, make_user, campaign, path):
    make_user("admin@example.com", role="admin")
    login(client, "admin@example.com")
    if "campaigns" in path:
        campaign.name = '=HYPERLINK("http://evil.example","x")'
        db.session.commit()
    response = client.get(path)
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert not any(cell.startswith(FORMULAS) for row in rows for cell in row)
    assert any(cell.startswith("'=HYPERLINK") for row in rows for cell in row)
