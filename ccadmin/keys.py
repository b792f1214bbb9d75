"""The Redis contract between the worker (writer) and the API (reader).

Standard library only. Nothing else in the project spells a Redis key.

Layout (KEYSPACE_VERSION 2), Redis Cluster safe: keys written together in one
script or transaction share a hash tag, so they live in one slot.
- entry_key(campaign, user_id): hash {v: version, b: pre-rendered JSON body},
  tagged with the entry's group (ENTRY_GROUPS of them, spread over the
  cluster's slots): a batch of writes is one script call per group.
  An empty body is a tombstone: the entry was deleted at version v, and an
  older write must not bring it back.
- The config, tagged {cfg}: CAMPAIGNS: hash slug -> JSON campaign config (see
  campaign_config fields in ccadmin/payload.py); DEFAULT_CAMPAIGN: the slug
  `/data` serves; API_KEYS: hash sha256(secret) hex -> JSON {"name",
  "campaigns"} (null: all); CONFIG_VERSION: incremented on every change to
  the three, so API processes reload their in-memory copy (one MULTI) only
  when something changed.
- READY: written only after a full build from the database; without it the
  API answers 503 rather than 404s or fallbacks built from an empty store.
"""

from __future__ import annotations

import hashlib
import zlib

# The stored body format (part of every ETag).
PAYLOAD_VERSION = 1
# Bumped with PAYLOAD_VERSION and whenever the key layout changes: a rebuild
# writes the new namespace beside the old and the API switches at deploy.
KEYSPACE_VERSION = 2
PREFIX = f"cc:{KEYSPACE_VERSION}"
# Entries are spread over this many hash tags: enough for an even spread over
# any cluster size in use (16,384 slots), few enough that a batch of a few
# thousand writes still carries several entries per script call.
ENTRY_GROUPS = 1024
CONFIG_TAG = "{cfg}"

ENTRY_VERSION_FIELD = "v"
ENTRY_BODY_FIELD = "b"

CAMPAIGNS = f"{PREFIX}:{CONFIG_TAG}:campaigns"
DEFAULT_CAMPAIGN = f"{PREFIX}:{CONFIG_TAG}:default_campaign"
API_KEYS = f"{PREFIX}:{CONFIG_TAG}:api_keys"
CONFIG_VERSION = f"{PREFIX}:{CONFIG_TAG}:config_version"
READY = f"{PREFIX}:ready"
SWEEPER_LOCK = f"{PREFIX}:sweeper_lock"
# Values replaced as a whole (DEFAULT_CAMPAIGN, API_KEYS) are compared by the
# snapshot number a writer takes from SNAPSHOT_SEQUENCE before it reads the
# database; CONFIG_SNAPSHOTS holds, per key, the number its value was built
# from, so a writer that read the database earlier never overwrites a later one.
SNAPSHOT_SEQUENCE = f"{PREFIX}:{CONFIG_TAG}:snapshot_sequence"
CONFIG_SNAPSHOTS = f"{PREFIX}:{CONFIG_TAG}:config_snapshots"
# Held (with a TTL) by the worker that runs the periodic reconcile; its expiry
# is the schedule, so the cluster reconciles once per interval.
RECONCILE_LOCK = f"{PREFIX}:reconcile_lock"
# JSON report of the last reconcile (what it checked and repaired, when, why),
# shown on the admin home page.
RECONCILE_REPORT = f"{PREFIX}:reconcile_report"
# The Redis server's run_id (INFO server) the last reconcile ran against: a
# different one means Redis restarted and may have lost its last writes.
REDIS_RUN_ID = f"{PREFIX}:redis_run_id"
# Hash of publishing counters: STAT_STALE_WRITES counts compare-and-set no-ops.
# The writer adds what its scripts report after each batch.
STATS = f"{PREFIX}:stats"
STAT_STALE_WRITES = "stale_writes"
STAT_WRITES = "writes"
# Ingest writes acknowledged but not applied: an older event time than the
# entry holds from the same source (ccadmin/publishing/event_times.py).
STAT_SUPERSEDED_WRITES = "superseded_writes"

# A full rebuild (workers/rebuild.py) runs as one RQ job per chunk of entry
# ids, on any number of workers. Its keys share the tag {rb}: a chunk is
# recorded done, and the plan's counters and lock updated, in one script.
REBUILD_TAG = "{rb}"
# Held by the rebuild in progress (SET NX with a TTL, extended as chunks
# progress); the value is the rebuild id, so a stalled rebuild is resumed
# under the same id and the jobs of a replaced one can never extend it.
REBUILD_LOCK = f"{PREFIX}:{REBUILD_TAG}:lock"
# Hash, the plan of the current (or last) full rebuild, written by whoever
# starts it: `id`, `chunk_size` (ids per chunk), `first_id`, `chunks` (chunk i
# covers ids first_id + i * chunk_size up to the next chunk's; the last one
# has no upper bound), `snapshot`,
# `started_at` (Unix seconds), `campaigns`, `api_keys`; counters added once per
# chunk: `chunks_done`, `entries`, `written`, `stale`; once READY is set,
# `finished_at` (Unix seconds) and `report` (READY's JSON). The admin home
# page shows progress from it.
REBUILD_PLAN = f"{PREFIX}:{REBUILD_TAG}:plan"
# Hash chunk index -> JSON {"worker", "entries", "seconds"}: the chunks done,
# each set once (HSETNX), so a chunk that runs twice is counted once.
REBUILD_CHUNKS = f"{PREFIX}:{REBUILD_TAG}:chunks"

# Lists the web process pushes one item onto after a commit that wrote outbox
# events (LPUSH + LTRIM to one item: at most one pending wake-up, however many
# writes), one list per drainer lane: single edits and small batches wake the
# fresh lane, import batches the bulk lane (ccadmin/publishing/wake.py). Every
# worker's drainers wait on them with BLPOP and then drain the outbox in
# batches; they also poll the outbox when nothing wakes them.
PUBLISH_WAKE = f"{PREFIX}:publish_wake"
PUBLISH_WAKE_BULK = f"{PREFIX}:publish_wake_bulk"
# Held (SET NX, a short TTL) by the drainer of a lane while it drains, on a
# database without row locks that skip (SQLite): one drainer per lane at a time.
DRAIN_LOCK = f"{PREFIX}:drain_lock"
# RQ queue of bulk jobs (imports, rollbacks, scheduled changes, long coverage checks).
IMPORT_QUEUE = "ccadmin-imports"


def coverage_ids_key(token: str) -> str:
    """A list of user ids stashed for a coverage check run by a worker (expires)."""
    return f"{PREFIX}:coverage:{token}:ids"


def coverage_uncovered_key(token: str) -> str:
    """The ids without content that check found, for the download (expires)."""
    return f"{PREFIX}:coverage:{token}:uncovered"


# RQ queue of full-rebuild chunk jobs; the worker takes it before imports
# (while Redis is not ready the API answers 503). Edits never queue behind
# either: the drainers publish them from threads of their own.
REBUILD_QUEUE = "ccadmin-rebuild"
# The queues a worker takes jobs from, in order of priority.
WORKER_QUEUES = (REBUILD_QUEUE, IMPORT_QUEUE)
# Workers send RQ a heartbeat every WORKER_HEARTBEAT_SECONDS from a thread of
# their own, whatever the job does; one silent for WORKER_SILENCE_SECONDS is dead.
WORKER_HEARTBEAT_SECONDS = 2.0
WORKER_SILENCE_SECONDS = 10.0

# The worker's functions, by dotted path: RQ imports them in the worker, and
# the web process and the CLI name them without importing the workers package.
JOB_APPLY_IMPORT = "workers.imports.apply_import"
JOB_INGEST_IMPORT = "workers.imports.ingest_import"
JOB_APPLY_SCHEDULED_CHANGE = "workers.imports.apply_scheduled_change"
JOB_CHECK_COVERAGE = "workers.imports.check_coverage"
JOB_REBUILD_CHUNK = "workers.rebuild.rebuild_chunk"
JOB_START_REBUILD = "workers.rebuild.start_rebuild"
JOB_RECONCILE = "workers.rebuild.reconcile"
# What the sweeper does for a rebuild in progress: enqueue chunks lost with a
# worker, resume a stalled one (the CLI's rebuild calls it too).
JOB_ENSURE_READY = "workers.sweeper.ensure_ready"
JOB_PATHS = (
    JOB_APPLY_IMPORT,
    JOB_INGEST_IMPORT,
    JOB_APPLY_SCHEDULED_CHANGE,
    JOB_CHECK_COVERAGE,
    JOB_REBUILD_CHUNK,
    JOB_START_REBUILD,
    JOB_RECONCILE,
    JOB_ENSURE_READY,
)

# Entry changes, announced on a pub/sub channel so API processes can keep an
# in-process cache correct (ccadmin/api/cache.py). Each message is a JSON
# array [key, version, key, version, ...] of the entry writes a script
# applied, published by the same script, so a change and its announcement are
# one atomic step. Version 0 means "repaired or removed: drop whatever version
# you hold". ENTRY_CHANGES_FLUSH means anything may have changed (a full
# rebuild finished): drop everything.
ENTRY_CHANGES_FLUSH = "*"


def entry_changes_channel(db: int) -> str:
    """The channel of entry changes in Redis database `db`.

    Pub/sub is server-wide, not per database: naming the database keeps
    deployments sharing one Redis server from invalidating each other.
    """
    return f"{PREFIX}:entry_changes:{db}"


# Live metrics (docs/metrics.md). Every API process adds its counts of the
# last second with HINCRBY into one hash per time bucket at each resolution,
# so processes on any number of hosts sum up; the worker adds publish lag to
# the same hashes. A bucket's key is metric_bucket_key(resolution, start),
# `start` being the bucket's first second (Unix time) divided by the
# resolution; the fields' format is ccadmin/metrics/buckets.py.
# Every metrics key shares the tag {m}: a flush is one MULTI, also on a
# cluster (a few small writes per API process and second, on one shard).
METRICS_TAG = "{m}"
# Sorted set of API processes ("host|pid") scored by their last flush time.
METRIC_PROCESSES = f"{PREFIX}:{METRICS_TAG}:processes"
# Hash of the publish lag's cumulative histogram, for Prometheus: a field per
# bucket index (buckets.LAG_BOUNDS) and `sum` (seconds); never expires.
PUBLISH_LAG_TOTALS = f"{PREFIX}:{METRICS_TAG}:publish_lag_totals"
PUBLISH_LAG_SUM = "sum"


def metric_bucket_key(resolution: int, start: int) -> str:
    """Key of one metrics bucket: `start` is Unix seconds // resolution."""
    return f"{PREFIX}:{METRICS_TAG}:{resolution}:{start}"


def entry_group(campaign_slug: str, user_id: str) -> int:
    """The hash-tag group of one entry: stable, and computed alike by writer and reader."""
    name = f"{campaign_slug}:{user_id}".encode("utf-8", "surrogatepass")
    return zlib.crc32(name) % ENTRY_GROUPS


def entry_key(campaign_slug: str, user_id: str) -> str:
    """Key of one user's pre-rendered content in one campaign.

    The tag comes before the user id, which a caller chooses: Redis Cluster
    hashes the first {...} of a key.
    """
    return f"{PREFIX}:e:{{{entry_group(campaign_slug, user_id)}}}:{campaign_slug}:{user_id}"


def entry_key_pattern(campaign_slug: str) -> str:
    """SCAN pattern for every entry of a campaign (used by reconcile)."""
    return f"{PREFIX}:e:{{*}}:{campaign_slug}:*"


def entry_tag(key: str) -> str:
    """The hash tag of an entry key: keys with the same tag share a slot."""
    return key[key.index("{") + 1 : key.index("}")]


def entry_user_id(key: str) -> str:
    """The user id an entry key was made from (campaign slugs hold no ':')."""
    return key[key.index("}") + 2 :].split(":", 1)[1]


# Admin security state (ccadmin/security/), outside the payload namespace: a
# payload format change must not log everyone out.
ADMIN_PREFIX = "cc:admin"


def login_failures_key(scope: str, value: str) -> str:
    """Failed-login counter for one account or one client address.

    `value` is what the client typed or sent, so only its digest is part of
    the key: a key's length and characters never depend on request input.
    """
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{ADMIN_PREFIX}:login_failures:{scope}:{digest}"


def admin_session_key(session_id: str) -> str:
    """The server-side record of one admin session (its id is server-made)."""
    return f"{ADMIN_PREFIX}:session:{session_id}"


def admin_user_sessions_key(user_id: int) -> str:
    """Set of the session ids one admin user holds, to end them all at once."""
    return f"{ADMIN_PREFIX}:user_sessions:{user_id}"


def manage_rate_key(token_id: int, window_start: int) -> str:
    """Requests one management token made in the rate-limit window starting then."""
    return f"{ADMIN_PREFIX}:manage_rate:{token_id}:{window_start}"
