"""Who may read a campaign: API keys from headers, checked in constant time.

A key arrives as `Authorization: Bearer KEY`, `X-API-Key: KEY`, or HTTP Basic
with the key as the password (Braze can send Basic credentials or custom
headers). Query-string keys are never read: URLs end up in logs.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
from base64 import b64decode
from collections.abc import Mapping

from ccadmin.api.store import ApiKey, ConfigSnapshot

CHALLENGE = 'Bearer realm="ccadmin", Basic realm="ccadmin", charset="UTF-8"'


def _header_text(value: str) -> str:
    # WSGI hands headers over as latin-1 text; the bytes are UTF-8 in practice.
    try:
        return value.encode("latin-1").decode("utf-8").strip()
    except UnicodeError:
        return ""  # unreadable: refused as a wrong key


def presented_key(environ: Mapping[str, object]) -> str | None:
    """The key the request carries, or None when it carries none.

    An unreadable or unsupported credential comes back as "" so the caller
    answers "wrong key" rather than "missing key".
    """
    header_key = environ.get("HTTP_X_API_KEY")
    if isinstance(header_key, str) and header_key.strip():
        return _header_text(header_key)
    authorization = environ.get("HTTP_AUTHORIZATION")
    if not isinstance(authorization, str) or not authorization.strip():
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    scheme = scheme.lower()
    credentials = credentials.strip()
    if scheme == "bearer" and credentials:
        return _header_text(credentials)
    if scheme == "basic" and credentials:
        try:
            decoded = b64decode(credentials.encode("ascii"), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeError, ValueError):
            return ""
        _, _, password = decoded.partition(":")
        return password
    return ""


def find_key(snapshot: ConfigSnapshot, key: str) -> ApiKey | None:
    """The valid key matching `key`, comparing every digest in constant time."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    found = None
    # No early exit: the time taken does not depend on which key matched.
    for candidate in snapshot.api_keys:
        if hmac.compare_digest(candidate.digest, digest):
            found = candidate
    return found


def allows(api_key: ApiKey, campaign_slug: str) -> bool:
    """True when the key may read this campaign."""
    return api_key.campaigns is None or campaign_slug in api_key.campaigns
