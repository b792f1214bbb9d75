"""Who may read a campaign: API keys from headers, checked in constant time; caller addresses.

A key arrives as `Authorization: Bearer KEY`, `X-API-Key: KEY`, or HTTP Basic
with the key as the password (Braze can send Basic credentials or custom
headers). Query-string keys are never read: URLs end up in logs.

With `API_ALLOWED_IPS` set, only callers inside those ranges are answered.
The caller is the connection's peer, unless that peer is one of
`API_TRUSTED_PROXIES`: then X-Forwarded-For is read from the right (each
proxy appends the address it saw) and the first address that is not a
trusted proxy is the caller. A client cannot pick its address by sending
X-Forwarded-For itself, since its own connection is not a trusted proxy.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import ipaddress
from base64 import b64decode
from collections.abc import Mapping
from functools import lru_cache

from ccadmin.api.config_snapshot import ApiKey, ConfigSnapshot
from ccadmin.config import IpNetwork

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# X-Forwarded-For entries read at most: more proxies than this in a row is
# not a deployment, it is a header someone wrote.
MAX_FORWARDED_HOPS = 16

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


def _address(text: str) -> IpAddress | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def _inside(address: IpAddress, networks: tuple[IpNetwork, ...]) -> bool:
    return any(address in network for network in networks)


class CallerAllowlist:
    """Answers only callers whose address is inside the allowed ranges."""

    def __init__(
        self, allowed: tuple[IpNetwork, ...], trusted_proxies: tuple[IpNetwork, ...] = ()
    ) -> None:
        self.allowed = allowed
        self.trusted_proxies = trusted_proxies
        # Callers come from few addresses and reuse them: remember the answers.
        self._decide = lru_cache(maxsize=4096)(self._decide_uncached)

    def caller(self, remote_addr: str, forwarded_for: str) -> IpAddress | None:
        """The caller's address, or None when it cannot be told (refused)."""
        address = _address(remote_addr)
        if address is None or not _inside(address, self.trusted_proxies):
            return address
        for hop in reversed(forwarded_for.split(",")[-MAX_FORWARDED_HOPS:]):
            if not hop.strip():
                continue
            address = _address(hop)
            if address is None:
                return None
            if not _inside(address, self.trusted_proxies):
                return address
        # Every hop was a trusted proxy: the leftmost one is the caller.
        return address

    def _decide_uncached(self, remote_addr: str, forwarded_for: str) -> bool:
        address = self.caller(remote_addr, forwarded_for)
        return address is not None and _inside(address, self.allowed)

    def allows(self, environ: Mapping[str, object]) -> bool:
        """True when the request's caller is inside the allowed ranges."""
        remote_addr = environ.get("REMOTE_ADDR")
        forwarded_for = environ.get("HTTP_X_FORWARDED_FOR")
        return self._decide(
            remote_addr if isinstance(remote_addr, str) else "",
            forwarded_for if isinstance(forwarded_for, str) else "",
        )
