"""The Redis contract between the worker (writer) and the API (reader).

Standard library only. Nothing else in the project spells a Redis key.

Layout (PAYLOAD_VERSION 1):
- entry_key(campaign, user_id): hash {v: version, b: pre-rendered JSON body}.
  An empty body is a tombstone: the entry was deleted at version v, and an
  older write must not bring it back.
- CAMPAIGNS: hash slug -> JSON campaign config (see campaign_config fields in
  ccadmin/payload.py); DEFAULT_CAMPAIGN: the slug `/data` serves.
- API_KEYS: hash sha256(secret) hex -> JSON {"name", "campaigns"} (null: all).
- CONFIG_VERSION: incremented on every change to the three above, so API
  processes reload their in-memory copy only when something changed.
- READY: written only after a full build from the database; without it the
  API answers 503 rather than 404s or fallbacks built from an empty store.
"""

from __future__ import annotations

# Bump when the stored body format changes; the namespace changes with it, so a
# rebuild writes the new format beside the old and the API switches at deploy.
PAYLOAD_VERSION = 1
PREFIX = f"cc:{PAYLOAD_VERSION}"

ENTRY_VERSION_FIELD = "v"
ENTRY_BODY_FIELD = "b"

CAMPAIGNS = f"{PREFIX}:campaigns"
DEFAULT_CAMPAIGN = f"{PREFIX}:default_campaign"
API_KEYS = f"{PREFIX}:api_keys"
CONFIG_VERSION = f"{PREFIX}:config_version"
READY = f"{PREFIX}:ready"
REBUILD_LOCK = f"{PREFIX}:rebuild_lock"
SWEEPER_LOCK = f"{PREFIX}:sweeper_lock"
# Values replaced as a whole (DEFAULT_CAMPAIGN, API_KEYS) are compared by the
# snapshot number a writer takes from SNAPSHOT_SEQUENCE before it reads the
# database; CONFIG_SNAPSHOTS holds, per key, the number its value was built
# from, so a writer that read the database earlier never overwrites a later one.
SNAPSHOT_SEQUENCE = f"{PREFIX}:snapshot_sequence"
CONFIG_SNAPSHOTS = f"{PREFIX}:config_snapshots"
# Held (with a TTL) by the worker that runs the periodic reconcile; its expiry
# is the schedule, so the cluster reconciles once per interval.
RECONCILE_LOCK = f"{PREFIX}:reconcile_lock"
# Hash of publishing counters: STAT_STALE_WRITES counts compare-and-set no-ops.
STATS = f"{PREFIX}:stats"
STAT_STALE_WRITES = "stale_writes"
STAT_WRITES = "writes"

# RQ queue the web process enqueues publish jobs on.
PUBLISH_QUEUE = "ccadmin-publish"


def entry_key(campaign_slug: str, user_id: str) -> str:
    """Key of one user's pre-rendered content in one campaign."""
    return f"{PREFIX}:e:{campaign_slug}:{user_id}"


def entry_key_pattern(campaign_slug: str) -> str:
    """SCAN pattern for every entry of a campaign (used by reconcile)."""
    return f"{PREFIX}:e:{campaign_slug}:*"
