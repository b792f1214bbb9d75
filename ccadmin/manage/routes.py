"""The blueprint and its operation registry: each route is declared once, with its contract.

`operation()` registers a view on the blueprint and records its method, path,
scope, request schema and responses; openapi.py builds the document from that
record, so a route cannot exist without being documented, or the reverse.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, request
from werkzeug.exceptions import MethodNotAllowed

from ccadmin.content.schema import nested_deeper_than
from ccadmin.manage import errors, idempotency, schemas
from ccadmin.manage.errors import Accepted, ApiError

bp = Blueprint("manage", __name__, url_prefix="/manage/v1")
# Repeated slashes can belong to a user id: never redirect them away. OPTIONS
# is answered by close_methods(), naming only the path's own methods.
RULE_OPTIONS = {"merge_slashes": False, "provide_automatic_options": False}
errors.register(bp)

JSON_TYPES = ("application/json",)
# A single entry: at most 50 fields of 10,000 characters, 4 bytes each in UTF-8.
MAX_ENTRY_BYTES = 2 * 1024 * 1024


@dataclass
class Operation:
    """One method on one path, as the OpenAPI document describes it."""

    operation_id: str
    method: str
    rule: str
    summary: str
    description: str = ""
    scope: str | None = "read"
    body: dict[str, Any] | None = None
    body_types: tuple[str, ...] = JSON_TYPES
    body_required: bool = True
    query: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, Any]] = field(default_factory=list)
    responses: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    response_headers: dict[int, list[str]] = field(default_factory=dict)
    # OpenAPI links: answer status -> operations reachable with what it returned.
    links: dict[int, list[str]] = field(default_factory=dict)
    # How a linked operation's parameter that is not in this path is filled.
    link_parameters: dict[str, str] = field(default_factory=dict)
    # The largest body the view reads into memory; None for a streamed body.
    body_limit: int | None = MAX_ENTRY_BYTES

    @property
    def writes(self) -> bool:
        return self.method not in ("GET", "HEAD")


OPERATIONS: list[Operation] = []


def operation(rule: str, method: str, **spec: Any) -> Callable[[Callable], Callable]:
    """Register `view` at `rule` for `method` and record its contract."""

    def register(view: Callable) -> Callable:
        op = Operation(operation_id=view.__name__, method=method, rule=rule, **spec)
        OPERATIONS.append(op)
        view.manage_operation = op  # type: ignore[attr-defined]
        answered = _answering_accepted(view) if op.writes else view
        served = idempotency.idempotent(answered, op.body_limit) if op.writes else view
        bp.add_url_rule(
            rule, endpoint=view.__name__, view_func=served, methods=[method], **RULE_OPTIONS
        )
        return view

    return register


def _answering_accepted(view: Callable) -> Callable:
    """The view, with a change that became a change request answered 202."""

    @functools.wraps(view)
    def answered(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except Accepted as accepted:
            return accepted.response()

    return answered


def require_media_type(allowed: tuple[str, ...]) -> str:
    """This request's body type if it is one of `allowed`; else 415."""
    mimetype = request.mimetype
    if mimetype not in allowed:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Send the body as {' or '.join(allowed)}.",
            {"content_type": mimetype or None, "accepted": list(allowed)},
        )
    return mimetype


def read_body(max_bytes: int) -> bytes:
    """The request body, refused with 413 past `max_bytes` (also when sent chunked)."""
    request.max_content_length = max_bytes
    # Kept: an Idempotency-Key retry may have read it already (idempotency.fingerprint).
    return request.get_data(cache=True)


def too_deep(limit: int) -> str:
    """What a document nested deeper than `limit` levels is told."""
    return f"Nested deeper than {limit} level{'s' if limit != 1 else ''} of arrays and objects."


def parse_json(raw: bytes, max_depth: int) -> Any:
    """Strict JSON (UTF-8, no NaN); 400 with the position of the first problem.

    A body nested deeper than `max_depth` (what its schema allows) is a 422
    before json.loads, which would otherwise recurse into a RecursionError.
    """
    if nested_deeper_than(raw, max_depth):
        raise ApiError(
            422,
            "validation_failed",
            "The body is nested deeper than its schema allows.",
            {"body": {"body": too_deep(max_depth)}},
        )
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "The body is not UTF-8 text.") from None
    except ValueError as error:
        raise ApiError(400, "invalid_json", f"The body is not valid JSON: {error}.") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_body(
    schema: dict[str, Any], max_bytes: int = MAX_ENTRY_BYTES, media_types: tuple[str, ...] = ()
) -> Any:
    """The JSON body, checked against `schema`; 422 with the problems by path."""
    require_media_type(JSON_TYPES + media_types)
    document = parse_json(read_body(max_bytes), schemas.nesting(schema))
    problems = schemas.validate(schema, document)
    if problems:
        raise ApiError(
            422, "validation_failed", "The body does not match the schema.", {"body": problems}
        )
    return document


def query_flag(name: str) -> bool:
    """A true/false query parameter; anything else is a 400, never a silent false."""
    raw = request.args.get(name)
    if raw is None or raw.lower() in ("false", "0"):
        return False
    if raw.lower() in ("true", "1"):
        return True
    raise ApiError(400, "bad_request", f"`{name}` must be true or false.", {name: raw[:100]})


ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def close_methods() -> None:
    """Answer OPTIONS with the path's methods, and the others with a JSON 405 naming them.

    Without these rules werkzeug refuses the method while routing, before the
    blueprint is known, and the admin's HTML error page would answer; Flask's
    own OPTIONS would list every method any rule on the path accepts.
    """
    methods_by_rule: dict[str, set[str]] = {}
    for op in OPERATIONS:
        methods_by_rule.setdefault(op.rule, set()).add(op.method)
    for number, (rule, methods) in enumerate(methods_by_rule.items()):
        allowed = sorted(methods)

        def refuse(allowed: list[str] = allowed, **_: Any) -> Any:
            raise MethodNotAllowed(valid_methods=allowed)

        def options(allowed: list[str] = allowed, **_: Any) -> Response:
            extra = ["HEAD", "OPTIONS"] if "GET" in allowed else ["OPTIONS"]
            return Response(status=204, headers={"Allow": ", ".join(allowed + extra)})

        others = [method for method in ALL_METHODS if method not in methods]
        bp.add_url_rule(
            rule,
            endpoint=f"method_not_allowed_{number}",
            view_func=refuse,
            methods=others,
            **RULE_OPTIONS,
        )
        bp.add_url_rule(
            rule,
            endpoint=f"options_{number}",
            view_func=options,
            methods=["OPTIONS"],
            **RULE_OPTIONS,
        )


@bp.route("/<anytext:anything>", methods=[*ALL_METHODS, "OPTIONS"], **RULE_OPTIONS)
def not_found(anything: str) -> Any:
    """Unknown paths under /manage/v1 answer in JSON like the rest."""
    raise ApiError(404, "not_found", "There is nothing at this address.")
