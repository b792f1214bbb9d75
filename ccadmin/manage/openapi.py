"""The OpenAPI 3.1 document, built from the operation registry and the schemas in use.

Nothing here is written by hand per endpoint: each path, method, body and
response comes from the `operation()` declaration of its view and the schema
objects in schemas.py that the view validates with. The reference page
renders the same document on the server (the admin's CSP allows no CDN).
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import jsonify, render_template
from werkzeug.wrappers import Response

from ccadmin.manage import idempotency, schemas
from ccadmin.manage.routes import OPERATIONS, Operation, bp

TITLE = "ccadmin ingest API"
VERSION = "1.0.0"
_RULE_PARAMETER = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")
# Answers any authenticated operation can give, whatever it does.
_AUTH_RESPONSES = {
    401: "No token, or an unknown or revoked one",
    403: "The token's scope does not allow this (read-only, or another campaign)",
    429: "Too many requests for this token; retry after `Retry-After` seconds",
}
_BODY_RESPONSES = {
    400: "The body is not valid JSON or not UTF-8 (or a query parameter is malformed)",
    413: "The body is larger than this endpoint accepts",
    415: "The body's Content-Type is not accepted here",
    422: (
        "The body does not match the schema, is nested deeper than the schema allows "
        "(checked before parsing), or holds text that is not valid Unicode (an unpaired "
        "surrogate such as `\\ud800`); `details` says where"
    ),
}
_HEADER_SCHEMAS = {
    "ETag": {"description": 'The entry\'s version, quoted: `"3"`.', "schema": {"type": "string"}},
    "Location": {"description": "The new resource's address.", "schema": {"type": "string"}},
    "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "string"}},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _component_refs(schema: Any) -> Any:
    """A schema with every nested component replaced by its $ref (components stay named)."""
    for name, component in schemas.COMPONENTS.items():
        if schema is component:
            return _ref(name)
    if isinstance(schema, dict):
        return {key: _component_refs(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_component_refs(value) for value in schema]
    return schema


def _json_content(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(name)}}


def openapi_path(rule: str) -> str:
    """`/campaigns/<slug>/content/<path:user_id>` -> `/manage/v1/campaigns/{slug}/...`."""
    return bp.url_prefix + _RULE_PARAMETER.sub(r"{\1}", rule)


def _path_parameters(op: Operation) -> list[dict[str, Any]]:
    parameters = []
    for name in _RULE_PARAMETER.findall(op.rule):
        schema: dict[str, Any] = {"type": "string", "minLength": 1}
        if name == "user_id":
            schema["maxLength"] = 128
        if name == "import_id":
            schema = {"type": "integer", "minimum": 1}
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    return parameters


def _response(description: str, component: str | None, headers: list[str]) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description}
    if component is not None:
        answer["content"] = _json_content(component)
    if headers:
        answer["headers"] = {name: _HEADER_SCHEMAS[name] for name in headers}
    return answer


def _links(op: Operation, status: int) -> dict[str, Any]:
    """The operations this answer leads to, their path parameters taken from this exchange."""
    by_id = {other.operation_id: other for other in OPERATIONS}
    own = set(_RULE_PARAMETER.findall(op.rule))
    links = {}
    for target in op.links.get(status, []):
        # Parameters neither in this path nor in link_parameters are the client's to choose.
        parameters = {
            name: f"$request.path.{name}" if name in own else op.link_parameters[name]
            for name in _RULE_PARAMETER.findall(by_id[target].rule)
            if name in own or name in op.link_parameters
        }
        links[target] = {"operationId": target, "parameters": parameters}
    return links


def operation_document(op: Operation) -> dict[str, Any]:
    """One operation object of the document."""
    responses: dict[str, Any] = {}
    for status, (description, component) in sorted(op.responses.items()):
        responses[str(status)] = _response(
            description, component, op.response_headers.get(status, [])
        )
        if status in op.links:
            responses[str(status)]["links"] = _links(op, status)
    extra = dict(_AUTH_RESPONSES) if op.scope else {}
    if op.scope:
        extra[404] = "No such campaign (or entry)"
    if op.body is not None or op.query:
        extra.update(_BODY_RESPONSES)
    if op.writes:
        extra[400] = extra.get(400, "A malformed `Idempotency-Key`")
        for status, description in idempotency.RESPONSES.items():
            extra.setdefault(status, description)
    for status, description in extra.items():
        headers = ["Retry-After"] if status == 429 else []
        responses.setdefault(str(status), _response(description, "Error", headers))
    document: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "parameters": _path_parameters(op)
        + list(op.query)
        + list(op.headers)
        + ([idempotency.PARAMETER] if op.writes else []),
        "responses": dict(sorted(responses.items())),
    }
    if op.description:
        document["description"] = op.description
    if op.scope:
        document["security"] = [{"bearer": []}, {"basic": []}]
        document["x-token-scope"] = op.scope
    else:
        document["security"] = []
    if op.body is not None:
        schema = _component_refs(op.body)
        document["requestBody"] = {
            "required": op.body_required,
            "content": {media_type: {"schema": schema} for media_type in op.body_types},
        }
    return document


def build_document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(openapi_path(op.rule), {})[op.method.lower()] = operation_document(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": (
                "Push per-user content into ccadmin from your own systems. Every write is "
                "validated, versioned, audited and published exactly as an edit in the admin."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": {
                name: _component_refs_inner(component)
                for name, component in schemas.COMPONENTS.items()
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A management token (`ccm_...`) created in the admin.",
                },
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": (
                        "The same token as the user name (or the password), for tools that "
                        "send credentials as HTTP Basic."
                    ),
                },
            },
        },
    }


def _component_refs_inner(component: dict[str, Any]) -> dict[str, Any]:
    # The component itself stays inline; only the components nested in it become refs.
    return {key: _component_refs(value) for key, value in component.items()}


@bp.route("/openapi.json")
def openapi_document() -> Response:
    """The contract, for code generators and `schemathesis`."""
    return jsonify(build_document())


@bp.route("/reference")
def reference() -> str:
    """The document as a plain page: each operation with its parameters, body and answers."""
    document = build_document()
    operations = [
        (path, method.upper(), spec)
        for path, methods in document["paths"].items()
        for method, spec in methods.items()
    ]
    return render_template(
        "manage/reference.html",
        document=document,
        operations=operations,
        schemas_json={
            name: json.dumps(schema, indent=2)
            for name, schema in document["components"]["schemas"].items()
        },
        as_json=lambda value: json.dumps(value, indent=2),
    )
