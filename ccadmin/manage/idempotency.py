"""`Idempotency-Key` on the ingest API's writes: a retry gets the first answer, replayed.

A client that lost an answer (a timeout, a dropped connection) sends the same
request with the same key and gets the stored answer with
`Idempotent-Replayed: true`, without the write happening twice: a `DELETE`
answers 204 again, not 404, and a batch or an import is not applied twice.

The key is claimed in the write's own transaction (a `before_commit` hook), so
a stored key always names a committed write and a write that rolled back
leaves no key. The answer itself is stored right after; keys are kept for
KEEP_HOURS per token. A key reused for a different request is a 422; a key
whose first request has not been answered yet is a 409.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any

from flask import Response, request
from sqlalchemy import delete, event, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from ccadmin.extensions import db
from ccadmin.manage import token_auth
from ccadmin.manage.errors import ApiError
from ccadmin.models import IdempotentRequest
from ccadmin.models.idempotency import KEEP_HOURS
from ccadmin.models.types import utcnow

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
# A claim this old without an answer belongs to a request that died (a streamed
# import can take minutes to arrive, so not less).
ABANDONED_AFTER = timedelta(minutes=15)
# Printable ASCII without spaces, as the IETF draft's examples (UUIDs, random strings).
_KEY = re.compile(r"[\x21-\x7e]{1,255}")
# Answer headers worth replaying; the rest (dates, security headers) are the retry's own.
_KEPT_HEADERS = ("Content-Type", "ETag", "Location", "Cache-Control")

PARAMETER = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": (
        "Any unique string (a UUID) of 1-255 printable ASCII characters. A retry with "
        "the same key and the same request within 24 hours gets the first answer again "
        f"(with `{REPLAYED}: true`) and changes nothing."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
}
RESPONSES = {
    409: "A request with this `Idempotency-Key` is still being answered; retry shortly",
    422: "This `Idempotency-Key` was used for a different request",
}


def idempotent(view: Callable[..., Response], body_limit: int | None) -> Callable[..., Response]:
    """Wrap a write view; `body_limit` is what it reads (None: a streamed body, not kept)."""

    @wraps(view)
    def answer(**arguments: Any) -> Response:
        key = request.headers.get(HEADER)
        if key is None:
            return view(**arguments)
        if not _KEY.fullmatch(key):
            raise ApiError(
                400,
                "bad_request",
                f"`{HEADER}` must be 1-255 printable ASCII characters without spaces.",
            )
        token_id = token_auth.token().id
        digest = fingerprint(body_limit)
        stored = _stored(token_id, key)
        replayed = None if stored is None else _replay(stored, digest)
        if replayed is not None:
            return replayed
        claim = Claim(token_id, key, digest)
        try:
            response = view(**arguments)
        except BaseException:
            claim.withdraw()
            raise
        claim.stop_listening()
        if 200 <= response.status_code < 300:
            _store_answer(token_id, key, digest, response)
        else:
            claim.withdraw()
        return response

    return answer


def fingerprint(body_limit: int | None) -> str:
    """What makes two requests the same: method, path, query, content type and body."""
    digest = hashlib.sha256()
    for part in (request.method, request.path, request.query_string.decode("latin-1")):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    digest.update((request.mimetype or "").encode() + b"\0")
    if body_limit is not None:
        request.max_content_length = body_limit
        digest.update(request.get_data(cache=True))
    return digest.hexdigest()


def _stored(token_id: int, key: str) -> IdempotentRequest | None:
    oldest = utcnow() - timedelta(hours=KEEP_HOURS)
    found = db.session.get(IdempotentRequest, (token_id, key))
    if found is not None and _aware(found.created_at) < oldest:
        db.session.execute(_this_key(token_id, key))
        db.session.commit()
        return None
    return found


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes (stored as UTC).
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _this_key(token_id: int, key: str):
    return delete(IdempotentRequest).where(
        IdempotentRequest.token_id == token_id, IdempotentRequest.key == key
    )


def _replay(stored: IdempotentRequest, digest: str) -> Response | None:
    """The stored answer; None when the key's first request died unanswered."""
    if stored.fingerprint != digest:
        raise ApiError(
            422,
            "idempotency_key_reused",
            f"This `{HEADER}` was used for a different request; use a new key.",
        )
    if stored.status is None and _aware(stored.created_at) < utcnow() - ABANDONED_AFTER:
        # Claimed by a request that died before answering: run this one instead.
        db.session.execute(_this_key(stored.token_id, stored.key))
        db.session.commit()
        return None
    if stored.status is None:
        raise ApiError(
            409,
            "idempotency_key_in_use",
            f"The first request with this `{HEADER}` is still being answered; retry shortly.",
            headers={"Retry-After": "1"},
        )
    response = Response(stored.body, status=stored.status)
    for name, value in (stored.headers or {}).items():
        response.headers[name] = value
    response.headers[REPLAYED] = "true"
    db.session.rollback()
    return response


def _insert(values: dict[str, Any]):
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    return insert(IdempotentRequest).values(**values).on_conflict_do_nothing()


class Claim:
    """The key, inserted in the first transaction the view commits (or that commit refused)."""

    def __init__(self, token_id: int, key: str, digest: str) -> None:
        self.token_id, self.key, self.digest = token_id, key, digest
        self.attempted = self.claimed = False
        self.session = db.session()
        event.listen(self.session, "before_commit", self.claim)

    def claim(self, committing: Any) -> None:
        # Only the first commit; the listener is removed after the view (not
        # while SQLAlchemy iterates over it).
        if self.attempted:
            return
        self.attempted = True
        values = {
            "token_id": self.token_id,
            "key": self.key,
            "fingerprint": self.digest,
            "created_at": utcnow(),
        }
        # Waits for a concurrent claim of the same key to end, then inserts nothing.
        if committing.execute(_insert(values)).rowcount == 0:
            raise ApiError(
                409,
                "idempotency_key_in_use",
                f"Another request with this `{HEADER}` came first; retry to get its answer.",
                headers={"Retry-After": "1"},
            )
        self.claimed = True

    def stop_listening(self) -> None:
        if event.contains(self.session, "before_commit", self.claim):
            event.remove(self.session, "before_commit", self.claim)

    def withdraw(self) -> None:
        """The view failed: free the key so a retry runs the request again."""
        self.stop_listening()
        if not self.claimed:
            return
        try:
            db.session.rollback()
            db.session.execute(_this_key(self.token_id, self.key))
            db.session.commit()
        except SQLAlchemyError:
            # The database is gone: the claim is abandoned and expires (ABANDONED_AFTER).
            log.warning("could not free Idempotency-Key after a failed request", exc_info=True)
            db.session.rollback()


def _store_answer(token_id: int, key: str, digest: str, response: Response) -> None:
    """Keep the answer; a view that committed nothing (a no-op) gets its key claimed here."""
    db.session.rollback()
    answer = {
        "status": response.status_code,
        "headers": {name: value for name in _KEPT_HEADERS if (value := response.headers.get(name))},
        "body": response.get_data(),
    }
    claimed = db.session.execute(
        update(IdempotentRequest)
        .where(IdempotentRequest.token_id == token_id, IdempotentRequest.key == key)
        .values(**answer)
    ).rowcount
    if not claimed:
        values = {"token_id": token_id, "key": key, "fingerprint": digest, "created_at": utcnow()}
        db.session.execute(_insert({**values, **answer}))
    db.session.commit()
