"""The config a request needs (campaigns, the default campaign, API keys), parsed once.

The worker publishes the config to Redis as JSON; the store (store.py) reads
it whole and swaps in a new immutable `ConfigSnapshot`, so requests read it
without a lock and never parse JSON themselves.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ccadmin import keys
from ccadmin.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Campaign:
    """One campaign's published config, with its response headers precomputed."""

    slug: str
    version: int
    active: bool
    public: bool
    fallback: str
    max_age: int
    fallback_prefix: str
    fallback_suffix: str
    cache_control: str
    etag_prefix: str

    @property
    def fallback_etag(self) -> str:
        """The fallback body changes only with the campaign's version."""
        return f'{self.etag_prefix}f{self.version}"'


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A valid key: its SHA-256 digest and the campaigns it may read (None: all)."""

    digest: bytes
    name: str
    campaigns: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    """Everything a request needs besides the entry itself; never mutated."""

    version: bytes
    campaigns: Mapping[str, Campaign]
    default_campaign: str | None
    api_keys: tuple[ApiKey, ...]


def parse_campaign(raw: bytes | str) -> Campaign:
    """A Campaign from the JSON payload.campaign_config() wrote."""
    config = json.loads(raw)
    slug = str(config["slug"])
    max_age = max(0, int(config["max_age"]))
    return Campaign(
        slug=slug,
        version=int(config["version"]),
        active=bool(config["active"]),
        public=bool(config["public"]),
        fallback=str(config["fallback"]),
        max_age=max_age,
        fallback_prefix=str(config["fallback_prefix"]),
        fallback_suffix=str(config["fallback_suffix"]),
        cache_control=f"private, max-age={max_age}",
        etag_prefix=f'"{keys.PAYLOAD_VERSION}-{slug}-',
    )


def _parse_api_key(digest_hex: bytes | str, raw: bytes | str) -> ApiKey:
    if isinstance(digest_hex, bytes):
        digest_hex = digest_hex.decode("ascii")
    config = json.loads(raw)
    campaigns = config.get("campaigns")
    return ApiKey(
        digest=bytes.fromhex(digest_hex),
        name=str(config.get("name") or ""),
        campaigns=None if campaigns is None else frozenset(str(slug) for slug in campaigns),
    )


def env_api_keys(settings: Settings) -> tuple[ApiKey, ...]:
    """The CCADMIN_API_KEYS keys: valid for every campaign, whatever Redis holds."""
    return tuple(
        ApiKey(
            digest=hashlib.sha256(secret.encode("utf-8")).digest(),
            name="CCADMIN_API_KEYS",
            campaigns=None,
        )
        for secret in settings.api_keys
    )


def build_snapshot(
    version: bytes,
    campaigns: Mapping[bytes, bytes],
    default_campaign: bytes | None,
    api_keys: Mapping[bytes, bytes],
    env_keys: tuple[ApiKey, ...],
) -> ConfigSnapshot:
    """Parse what Redis holds; one malformed item is skipped, not fatal."""
    parsed: dict[str, Campaign] = {}
    for slug, raw in campaigns.items():
        try:
            campaign = parse_campaign(raw)
        except (ValueError, KeyError, TypeError):
            log.warning("skipping malformed campaign config %r", slug)
            continue
        parsed[campaign.slug] = campaign
    valid_keys = list(env_keys)
    for digest_hex, raw in api_keys.items():
        try:
            valid_keys.append(_parse_api_key(digest_hex, raw))
        except (ValueError, TypeError, AttributeError):
            log.warning("skipping malformed API key entry %r", digest_hex)
    return ConfigSnapshot(
        version=version,
        campaigns=MappingProxyType(parsed),
        default_campaign=default_campaign.decode("utf-8") if default_campaign else None,
        api_keys=tuple(valid_keys),
    )
