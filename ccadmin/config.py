"""Settings from the environment, shared by every process (standard library only).

The API imports this module on its hot path, so it must stay free of Flask,
SQLAlchemy and anything else heavy.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INSTANCE = PROJECT_ROOT / "instance"
# Where `make run` keeps the random session key it generates on first start
# (owner-only); read when SECRET_KEY is unset.
SECRET_KEY_FILE = "secret_key"
MISSING_SECRET_KEY = (
    "SECRET_KEY is not set: set it to a long random string (python -c 'import secrets; "
    "print(secrets.token_urlsafe(48))'); `make run` creates one in instance/secret_key"
)

# HTTP servers the API can run under; the first is the default.
API_SERVERS = ("waitress", "granian")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message names the variable."""


def parse_bool(name: str, raw: str | None, default: bool) -> bool:
    """Strict boolean parsing: a typo is an error, not a silent False."""
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be one of 1/0/true/false/yes/no/on/off, got {raw!r}")


def parse_int(name: str, raw: str | None, default: int, minimum: int = 0) -> int:
    """Integer settings with a floor, so `API_THREADS=0` fails at start-up."""
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def parse_choice(name: str, raw: str | None, choices: tuple[str, ...]) -> str:
    """One of a fixed set of words (the first is the default); anything else is an error."""
    if raw is None or raw.strip() == "":
        return choices[0]
    value = raw.strip().lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


def normalize_database_url(url: str) -> str:
    """Heroku-style `postgres://` URLs are rejected by SQLAlchemy 2; rewrite them.

    A URL naming no driver gets psycopg2, the one installed (SQLAlchemy 2.1
    would pick psycopg 3); one that names a driver is kept as given.
    """
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg2://" + url[len(scheme) :]
    return url


def parse_api_keys(raw: str | None) -> tuple[str, ...]:
    """`CCADMIN_API_KEYS` is a comma-separated list; two entries allow rotation."""
    if not raw:
        return ()
    return tuple(key.strip() for key in raw.split(",") if key.strip())


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(name: str, raw: str | None) -> tuple[IpNetwork, ...]:
    """A comma-separated list of CIDR ranges (a bare address is a /32 or /128)."""
    networks = []
    for item in (raw or "").split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(
                f"{name} must list CIDR ranges like 10.0.0.0/8, got {item!r}"
            ) from None
    return tuple(networks)


def parse_redis_urls(name: str, value: str | None) -> tuple[str, ...]:
    """Comma-separated `redis://` or `rediss://` URLs, each with a host."""
    urls = tuple(part.strip() for part in (value or "").split(",") if part.strip())
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ConfigError(f"{name}: {url!r} is not a redis://host:port URL")
    return urls


@dataclass(frozen=True)
class Settings:
    """Everything a process needs to know about its environment."""

    instance_path: Path
    database_url: str
    redis_url: str | None
    secret_key: str | None
    api_keys: tuple[str, ...]
    admin_email: str | None
    admin_password: str | None
    admin_port: int
    api_port: int
    # One waitress thread serves one request at a time; each holds one Redis
    # connection while it does. More threads overlap Redis round trips but
    # cost GIL hand-offs; the CPU, not Redis, is the limit (see docs/scaling.md).
    api_threads: int
    # Connections waitress keeps open at once. The caller opens thousands in a
    # spike; past this number new connections wait in the kernel backlog.
    api_connection_limit: int
    # Forked waitress processes serving one port (a socket each); one per core.
    api_processes: int
    # Seconds any Redis call may take on the API side before it counts as down.
    # The caller gives up after 2 s, so this must stay far below that.
    api_redis_timeout: float
    # Entries each API process keeps in memory (an LRU): a hit answers without
    # Redis, and the same copies are served while Redis is down. An entry is a
    # few hundred bytes, so 100,000 cost about 40 MB per process. 0 disables
    # both the cache and the last-known copies.
    api_cache_size: int = 100_000
    # The HTTP server under the API: waitress (pure Python, the default) or
    # granian (a Rust server, optional: `pip install granian`) for operators
    # who outgrow waitress. The same WSGI app runs under either.
    api_server: str = "waitress"
    # Interface the API listens on: all of them by default (what a platform
    # router needs); 127.0.0.1 keeps a local API private to the machine.
    api_host: str = "0.0.0.0"
    # Seconds a connection may stay silent before the API closes it: idle
    # keep-alive callers and clients that connect and send nothing.
    api_channel_timeout: int = 30
    # Seconds an API process given SIGTERM lets requests in flight finish
    # (new connections are refused at once); below the platform's SIGKILL.
    api_shutdown_seconds: int = 10
    # Live metrics recording in each API process (docs/metrics.md): in-memory
    # counts and a latency histogram per request, flushed to Redis once a
    # second. `API_METRICS=0` turns both off (the dashboard and `/metrics` go
    # quiet); it exists to measure their overhead, which stays under 5%.
    api_metrics: bool = True
    # Pin each waitress process to one CPU of its affinity mask (docs/performance.md).
    # `API_PIN_CPUS=0` where the mask is not this process's own: a container
    # without exclusive CPUs sees the host's, and every pod would pin to the
    # same ones (docs/scaling.md).
    api_pin_cpus: bool = True
    # The endpoint's public base URL (`CCADMIN_API_URL`, e.g. https://content.example.com),
    # used in the Braze snippets the admin generates; unset, they show a placeholder.
    api_public_url: str | None = None
    # Reverse proxies in front of the admin (`CCADMIN_TRUSTED_PROXIES`, a count),
    # each adding one X-Forwarded-For/-Proto value. 0 believes no such header,
    # so a client cannot claim HTTPS or another address by sending one itself.
    trusted_proxies: int = 0
    # An admin session ends after this many minutes without a request
    # (`CCADMIN_SESSION_IDLE_MINUTES`) and this many hours after its login
    # (`CCADMIN_SESSION_MAX_HOURS`), whatever the activity.
    session_idle_minutes: int = 30
    session_max_hours: int = 12
    # Caller addresses the API answers (`API_ALLOWED_IPS`, CIDR ranges); empty
    # answers every address, keys still apply. X-Forwarded-For is believed only
    # from `API_TRUSTED_PROXIES` ranges (the platform's router).
    api_allowed_ips: tuple[IpNetwork, ...] = ()
    api_trusted_proxies: tuple[IpNetwork, ...] = ()
    # Seconds the worker lets its job in progress finish after SIGTERM
    # (`WORKER_SHUTDOWN_SECONDS`) before interrupting it; it must end before
    # the platform's SIGKILL (Heroku: 30 s after SIGTERM).
    worker_shutdown_seconds: int = 20
    # Requests per minute each management token may make to /manage/v1
    # (`CCADMIN_MANAGE_RATE_LIMIT`); past it, 429 with Retry-After. A batch of
    # 10,000 rows counts as one request. 0 turns the limit off.
    manage_rate_limit: int = 6000
    # The content store (entries, campaign configs, the ready marker, metrics)
    # on Redis Cluster: seed nodes, `redis://host:port` each
    # (`REDIS_CLUSTER_URLS`, comma separated). RQ's queues and the admin's
    # sessions stay on REDIS_URL: RQ needs a single Redis.
    redis_cluster_urls: tuple[str, ...] = ()
    # Read replicas of the REDIS_URL primary (`REDIS_READ_URLS`): API
    # processes read entries and the config there; workers write the primary.
    redis_read_urls: tuple[str, ...] = ()

    def require_secret_key(self) -> str:
        """The session signing key; processes that sign sessions refuse to start without one."""
        if not self.secret_key:
            raise ConfigError(MISSING_SECRET_KEY)
        return self.secret_key

    @property
    def embedded_redis(self) -> bool:
        """True when no `REDIS_URL` is set and the project runs its own Redis."""
        return self.redis_url is None

    @property
    def redis_socket_path(self) -> Path:
        return self.instance_path / "redis.sock"

    @property
    def effective_redis_url(self) -> str:
        """The URL every client should use, embedded or not."""
        if self.redis_url:
            return self.redis_url
        return f"unix://{self.redis_socket_path}"


def private_directory(path: Path) -> Path:
    """Create `path` owner-only (0700), or tighten it: it holds the key, data and sockets.

    A shared directory with the sticky bit (such as /tmp) is left as it is.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = path.stat().st_mode
    if mode & 0o077 and not mode & stat.S_ISVTX:
        path.chmod(0o700)
    return path


def stored_secret_key(instance_path: Path) -> str | None:
    """The key `make run` generated in the instance folder, if there is one."""
    try:
        return (instance_path / SECRET_KEY_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def load(environ: dict[str, str] | os._Environ | None = None) -> Settings:
    """Read and validate settings; raises ConfigError with the variable's name."""
    env = os.environ if environ is None else environ
    instance_path = Path(env.get("CCADMIN_INSTANCE_PATH") or DEFAULT_INSTANCE)
    database_url = normalize_database_url(
        env.get("DATABASE_URL") or f"sqlite:///{instance_path / 'ccadmin.db'}"
    )
    secret_key = env.get("SECRET_KEY") or stored_secret_key(instance_path)
    cores = os.cpu_count() or 1
    if env.get("REDIS_READ_URLS") and not env.get("REDIS_URL"):
        raise ConfigError("REDIS_READ_URLS needs REDIS_URL: the primary they replicate")
    if env.get("REDIS_READ_URLS") and env.get("REDIS_CLUSTER_URLS"):
        raise ConfigError("set REDIS_CLUSTER_URLS or REDIS_READ_URLS, not both")
    return Settings(
        instance_path=instance_path,
        database_url=database_url,
        redis_url=env.get("REDIS_URL") or None,
        secret_key=secret_key,
        api_keys=parse_api_keys(env.get("CCADMIN_API_KEYS")),
        admin_email=env.get("CCADMIN_ADMIN_EMAIL") or None,
        admin_password=env.get("CCADMIN_ADMIN_PASSWORD") or None,
        admin_port=parse_int("ADMIN_PORT", env.get("ADMIN_PORT"), 5000, 1),
        api_port=parse_int("API_PORT", env.get("API_PORT") or env.get("PORT"), 8000, 1),
        api_threads=parse_int("API_THREADS", env.get("API_THREADS"), 8, 1),
        api_connection_limit=parse_int(
            "API_CONNECTION_LIMIT", env.get("API_CONNECTION_LIMIT"), 20000, 1
        ),
        api_processes=parse_int("API_PROCESSES", env.get("API_PROCESSES"), cores, 1),
        api_redis_timeout=parse_int(
            "API_REDIS_TIMEOUT_MS", env.get("API_REDIS_TIMEOUT_MS"), 250, 10
        )
        / 1000.0,
        api_host=env.get("API_HOST") or "0.0.0.0",
        api_channel_timeout=parse_int("API_CHANNEL_TIMEOUT", env.get("API_CHANNEL_TIMEOUT"), 30, 1),
        api_shutdown_seconds=parse_int(
            "API_SHUTDOWN_SECONDS", env.get("API_SHUTDOWN_SECONDS"), 10, 0
        ),
        api_cache_size=parse_int("API_CACHE_SIZE", env.get("API_CACHE_SIZE"), 100_000, 0),
        api_server=parse_choice("API_SERVER", env.get("API_SERVER"), API_SERVERS),
        api_metrics=parse_bool("API_METRICS", env.get("API_METRICS"), True),
        api_pin_cpus=parse_bool("API_PIN_CPUS", env.get("API_PIN_CPUS"), True),
        api_public_url=(env.get("CCADMIN_API_URL") or "").rstrip("/") or None,
        trusted_proxies=parse_int("CCADMIN_TRUSTED_PROXIES", env.get("CCADMIN_TRUSTED_PROXIES"), 0),
        session_idle_minutes=parse_int(
            "CCADMIN_SESSION_IDLE_MINUTES", env.get("CCADMIN_SESSION_IDLE_MINUTES"), 30, 1
        ),
        session_max_hours=parse_int(
            "CCADMIN_SESSION_MAX_HOURS", env.get("CCADMIN_SESSION_MAX_HOURS"), 12, 1
        ),
        api_allowed_ips=parse_networks("API_ALLOWED_IPS", env.get("API_ALLOWED_IPS")),
        api_trusted_proxies=parse_networks("API_TRUSTED_PROXIES", env.get("API_TRUSTED_PROXIES")),
        worker_shutdown_seconds=parse_int(
            "WORKER_SHUTDOWN_SECONDS", env.get("WORKER_SHUTDOWN_SECONDS"), 20, 1
        ),
        manage_rate_limit=parse_int(
            "CCADMIN_MANAGE_RATE_LIMIT", env.get("CCADMIN_MANAGE_RATE_LIMIT"), 6000
        ),
        redis_cluster_urls=parse_redis_urls("REDIS_CLUSTER_URLS", env.get("REDIS_CLUSTER_URLS")),
        redis_read_urls=parse_redis_urls("REDIS_READ_URLS", env.get("REDIS_READ_URLS")),
    )
