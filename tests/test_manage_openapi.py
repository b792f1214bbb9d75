"""The OpenAPI document matches the code: built from the views' schemas, and checked from
outside by schemathesis's command line against a served copy (tests/contract/)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from common.manage_support import SCHEMA, make_token
from common.publishing_support import make_campaign
from common.support import start_admin

from ccadmin.config import PROJECT_ROOT
from ccadmin.manage import schemas
from ccadmin.manage.routes import OPERATIONS

CONFIG = Path(__file__).parent / "contract" / "schemathesis.toml"
# Per operation and phase; with a fixed seed the run is the same each time.
EXAMPLES = 30
SEED = 1


def test_schemathesis_cli_finds_nothing_with_every_check_and_the_stateful_phase(app, spawn):
    """`st run --checks all` over loopback, as a customer's engineer would run it."""
    make_campaign("spring", field_schema=SCHEMA)
    token = make_token("contract")
    web = start_admin(spawn)
    command = [
        shutil.which("st", path=str(Path(sys.executable).parent)) or "st",
        "--config-file",
        str(CONFIG),
        "run",
        f"{web}/manage/v1/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--header",
        f"Authorization: Bearer {token}",
        "--workers",
        "1",
        "--seed",
        str(SEED),
        "--max-examples",
        str(EXAMPLES),
        # A generator-side check: the imports body (CSV or NDJSON text) is
        # sometimes hard to generate; it says nothing about the API.
        "--suppress-health-check=filter_too_much",
    ]
    run = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    summary = run.stdout[-6000:]
    assert run.returncode == 0, summary
    assert "Stateful" in summary


def test_the_document_lists_every_operation_with_the_schemas_in_use(client):
    document = client.get("/manage/v1/openapi.json").json
    assert document["openapi"] == "3.1.0"
    declared = {(op.method.lower(), op.operation_id) for op in OPERATIONS}
    documented = {
        (method, spec["operationId"])
        for methods in document["paths"].values()
        for method, spec in methods.items()
    }
    assert documented == declared
    put = document["paths"]["/manage/v1/campaigns/{slug}/content/{user_id}"]["put"]
    body = put["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/EntryPut"}
    components = document["components"]["schemas"]
    assert components["EntryPut"]["properties"]["fields"] == schemas.FIELDS
    assert document["components"]["schemas"]["Error"] == schemas.ERROR


def test_the_reference_page_renders_every_operation(client):
    page = client.get("/manage/v1/reference").get_data(as_text=True)
    for op in OPERATIONS:
        assert f'id="{op.operation_id}"' in page
    assert "<script" not in page
