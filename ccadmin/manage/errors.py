"""JSON errors of the ingest API: `{"error", "message", "details"}` for every status."""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, jsonify, request
from sqlalchemy.exc import DisconnectionError, OperationalError
from werkzeug.exceptions import HTTPException

from ccadmin.extensions import db

log = logging.getLogger(__name__)

# Codes and messages for statuses werkzeug raises on its own (routing, body limits).
_HTTP_CODES = {
    400: ("bad_request", "The request could not be understood."),
    401: ("unauthorized", "Send a management token as `Authorization: Bearer <token>`."),
    403: ("forbidden", "This token may not do this."),
    404: ("not_found", "There is nothing at this address."),
    405: ("method_not_allowed", "This address does not accept that method."),
    413: ("too_large", "The request body is larger than this endpoint accepts."),
    415: ("unsupported_media_type", "The body's Content-Type is not accepted here."),
}


class ApiError(Exception):
    """An answer other than success; raised anywhere in a view, rendered as JSON."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.details = details
        self.headers = headers or {}


class Accepted(Exception):
    """A 202 raised from deep in a write: the change waits as a change request.

    Raised after the request is committed; routes.operation turns it into
    the answer, so an `Idempotency-Key` retry gets the same one.
    """

    def __init__(self, document: dict[str, Any], location: str) -> None:
        super().__init__(location)
        self.document = document
        self.location = location

    def response(self) -> Response:
        response = jsonify(self.document)
        response.status_code = 202
        response.headers["Location"] = self.location
        response.headers["Cache-Control"] = "no-store"
        return response


def error_response(
    status: int,
    error: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The JSON body every error of this API has."""
    body: dict[str, Any] = {"error": error, "message": message}
    if details is not None:
        body["details"] = details
    response = jsonify(body)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="ccadmin-manage"'
    return response


def handle_api_error(error: ApiError) -> Response:
    db.session.rollback()
    return error_response(error.status, error.error, error.message, error.details, error.headers)


def handle_http_error(error: HTTPException) -> Response:
    """werkzeug's own errors (413 from a body limit, 405...), in this API's format."""
    db.session.rollback()
    status = error.code or 500
    if status == 500:
        return handle_unexpected(getattr(error, "original_exception", None) or error)
    code, message = _HTTP_CODES.get(status, ("error", error.description or "Request failed."))
    kept = ("allow", "retry-after")
    headers = {name: value for name, value in error.get_headers() if name.lower() in kept}
    return error_response(status, code, message, headers=headers)


def handle_database_down(error: Exception) -> Response:
    log.error("database unreachable: %s", type(error).__name__, exc_info=error)
    db.session.rollback()
    return error_response(
        503,
        "database_unavailable",
        "The database cannot be reached. A write may or may not have been saved; "
        "retrying it is safe (a PUT as it is, other writes with the same Idempotency-Key).",
        headers={"Retry-After": "30"},
    )


def handle_unexpected(error: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=error)
    db.session.rollback()
    return error_response(500, "internal_error", "Something went wrong on our side; it is logged.")


def handle_any(error: Exception) -> Response:
    """Any error, as the blueprint's handlers would answer it (for errors raised outside it)."""
    if isinstance(error, ApiError):
        return handle_api_error(error)
    if isinstance(error, HTTPException):
        return handle_http_error(error)
    if isinstance(error, (OperationalError, DisconnectionError)):
        return handle_database_down(error)
    return handle_unexpected(error)


def register(blueprint: Any) -> None:
    """Install the handlers on the blueprint (its views only; see routes.not_found)."""
    blueprint.register_error_handler(ApiError, handle_api_error)
    blueprint.register_error_handler(HTTPException, handle_http_error)
    # The app's handlers by status code would win over a class handler here.
    for status in (*_HTTP_CODES, 429, 500):
        blueprint.register_error_handler(status, handle_http_error)
    blueprint.register_error_handler(OperationalError, handle_database_down)
    blueprint.register_error_handler(DisconnectionError, handle_database_down)
    blueprint.register_error_handler(Exception, handle_unexpected)
