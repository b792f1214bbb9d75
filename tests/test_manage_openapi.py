"""The OpenAPI document matches the code: built from the views' schemas, fuzzed by schemathesis."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from manage_support import SCHEMA, bearer, make_token
from publishing_support import make_campaign
from schemathesis import checks

from ccadmin.manage import schemas
from ccadmin.manage.routes import OPERATIONS

# Per operation; enough to hit every documented status, small enough to stay fast.
EXAMPLES = 25


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


def test_schemathesis_finds_no_server_error_and_no_schema_violation(app):
    """Every operation, with generated valid and invalid requests, bounded in examples."""
    make_campaign("spring", field_schema=SCHEMA)
    headers = bearer(make_token("fuzzer"))
    api_schema = schemathesis.openapi.from_wsgi("/manage/v1/openapi.json", app)
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == len(OPERATIONS)
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        call()


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
