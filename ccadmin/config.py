"""Settings from the environment, shared by every process (standard library only).

Each setting is declared once, as a field of `Settings`: its environment
variable, its parser, its default and a comment. `load()` reads them in
declaration order, so a default may depend on a setting above it.
docs/configuration.md lists every variable; a test keeps the two in step.

The API imports this module on its hot path, so it must stay free of Flask,
SQLAlchemy and anything else heavy.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
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
LOG_LEVELS = ("INFO", "DEBUG", "WARNING", "ERROR", "CRITICAL")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# A parser turns one set, non-blank value into the setting's type; it is given
# the variable's name for its error message.
Parser = Callable[[str, str], Any]


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message names the variable."""


def boolean(name: str, raw: str) -> bool:
    """Strict boolean parsing: a typo is an error, not a silent False."""
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be one of 1/0/true/false/yes/no/on/off, got {raw!r}")


def integer(minimum: int = 0) -> Parser:
    """Integer settings with a floor, so `API_THREADS=0` fails at start-up."""

    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
        return value

    return parse


def milliseconds_as_seconds(minimum: int) -> Parser:
    """A duration written in whole milliseconds and used in seconds."""
    parse_ms = integer(minimum)
    return lambda name, raw: parse_ms(name, raw) / 1000.0


def choice(choices: tuple[str, ...], *, upper: bool = False) -> Parser:
    """One of a fixed set of words; anything else is an error."""

    def parse(name: str, raw: str) -> str:
        value = raw.strip().upper() if upper else raw.strip().lower()
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def text(name: str, raw: str) -> str:
    return raw


def path(name: str, raw: str) -> Path:
    return Path(raw)


def base_url(name: str, raw: str) -> str | None:
    """A URL that paths are appended to: no trailing slash."""
    return raw.rstrip("/") or None


def normalize_database_url(url: str) -> str:
    """Heroku-style `postgres://` URLs are rejected by SQLAlchemy 2; rewrite them.

    A URL naming no driver gets psycopg2, the one installed (SQLAlchemy 2.1
    would pick psycopg 3); one that names a driver is kept as given.
    """
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg2://" + url[len(scheme) :]
    return url


def issuer_url(name: str, raw: str) -> str:
    """An OpenID Connect issuer: https, or http on a loopback host (a local provider)."""
    value = raw.strip().rstrip("/")
    parts = urlsplit(value)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
        raise ConfigError(f"{name} must be an https:// issuer URL, got {raw!r}")
    return value


def lowercase(name: str, raw: str) -> str:
    return raw.strip().lower()


def database_url(name: str, raw: str) -> str:
    return normalize_database_url(raw)


def word_list(name: str, raw: str) -> tuple[str, ...]:
    """A comma-separated list (`CCADMIN_API_KEYS`: two entries allow rotation)."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def networks(name: str, raw: str) -> tuple[IpNetwork, ...]:
    """A comma-separated list of CIDR ranges (a bare address is a /32 or /128)."""
    found = []
    for item in word_list(name, raw):
        try:
            found.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(
                f"{name} must list CIDR ranges like 10.0.0.0/8, got {item!r}"
            ) from None
    return tuple(found)


def redis_urls(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated `redis://` or `rediss://` URLs, each with a host."""
    urls = word_list(name, raw)
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ConfigError(f"{name}: {url!r} is not a redis://host:port URL")
    return urls


def stored_secret_key(instance_path: Path) -> str | None:
    """The key `make run` generated in the instance folder, if there is one."""
    try:
        return (instance_path / SECRET_KEY_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


# A default is a value, or a function of the settings declared above it.
Default = Any | Callable[[Mapping[str, Any]], Any]


def setting(env: str | tuple[str, ...], parse: Parser, default: Default = None) -> Any:
    """Declare one field of `Settings`: its variable (of a tuple, the first one
    set wins), the parser of a set value, and the default of an unset one."""
    names = (env,) if isinstance(env, str) else env
    return dataclasses.field(metadata={"env": names, "parse": parse, "default": default})


@dataclass(frozen=True)
class Settings:
    """Everything a process needs to know about its environment."""

    # Folder for the local state: the SQLite file, the embedded Redis, the
    # generated session key and credentials. Tests point it at a temporary one.
    instance_path: Path = setting("CCADMIN_INSTANCE_PATH", path, DEFAULT_INSTANCE)
    # The source of truth: PostgreSQL in production, SQLite by default.
    database_url: str = setting(
        "DATABASE_URL",
        database_url,
        lambda s: f"sqlite:///{s['instance_path'] / 'ccadmin.db'}",
    )
    # Unset: every process uses (and starts if needed) the embedded Redis.
    redis_url: str | None = setting("REDIS_URL", text)
    # The content store (entries, campaign configs, the ready marker, metrics)
    # on Redis Cluster: seed nodes, `redis://host:port` each. RQ's queues and
    # the admin's sessions stay on REDIS_URL: RQ needs a single Redis.
    redis_cluster_urls: tuple[str, ...] = setting("REDIS_CLUSTER_URLS", redis_urls, ())
    # Read replicas of the REDIS_URL primary: API processes read entries and
    # the config there; workers write the primary.
    redis_read_urls: tuple[str, ...] = setting("REDIS_READ_URLS", redis_urls, ())
    # Signs sessions and CSRF tokens; `make run` generates one into the
    # instance folder. Processes that sign sessions refuse to start without one.
    secret_key: str | None = setting(
        "SECRET_KEY", text, lambda s: stored_secret_key(s["instance_path"])
    )
    # Keys the API accepts besides those managed in the admin.
    api_keys: tuple[str, ...] = setting("CCADMIN_API_KEYS", word_list, ())
    # The first admin that `make run` creates; `create-user` uses the password
    # when none is given.
    admin_email: str | None = setting("CCADMIN_ADMIN_EMAIL", text)
    admin_password: str | None = setting("CCADMIN_ADMIN_PASSWORD", text)
    # The admin's port; PORT is the one a platform such as Heroku assigns.
    admin_port: int = setting(("ADMIN_PORT", "PORT"), integer(1), 5000)
    api_port: int = setting(("API_PORT", "PORT"), integer(1), 8000)
    # Interface the API listens on: all of them by default (what a platform
    # router needs); 127.0.0.1 keeps a local API private to the machine.
    api_host: str = setting("API_HOST", text, "0.0.0.0")
    # One waitress thread serves one request at a time; each holds one Redis
    # connection while it does. More threads overlap Redis round trips but
    # cost GIL hand-offs; the CPU, not Redis, is the limit (see docs/scaling.md).
    api_threads: int = setting("API_THREADS", integer(1), 8)
    # Connections waitress keeps open at once. The caller opens thousands in a
    # spike; past this number new connections wait in the kernel backlog.
    api_connection_limit: int = setting("API_CONNECTION_LIMIT", integer(1), 20000)
    # Seconds a connection may stay silent before the API closes it: idle
    # keep-alive callers and clients that connect and send nothing.
    api_channel_timeout: int = setting("API_CHANNEL_TIMEOUT", integer(1), 30)
    # Seconds an API process given SIGTERM lets requests in flight finish
    # (new connections are refused at once); below the platform's SIGKILL.
    api_shutdown_seconds: int = setting("API_SHUTDOWN_SECONDS", integer(0), 10)
    # Entries each API process keeps in memory (an LRU): a hit answers without
    # Redis, and the same copies are served while Redis is down. An entry is a
    # few hundred bytes, so 100,000 cost about 40 MB per process. 0 disables
    # both the cache and the last-known copies.
    api_cache_size: int = setting("API_CACHE_SIZE", integer(0), 100_000)
    # The HTTP server under the API: waitress (pure Python, the default) or
    # granian (a Rust server, optional: `pip install granian`) for operators
    # who outgrow waitress. The same WSGI app runs under either.
    api_server: str = setting("API_SERVER", choice(API_SERVERS), API_SERVERS[0])
    # Forked waitress processes serving one port (a socket each); one per core.
    api_processes: int = setting("API_PROCESSES", integer(1), lambda s: os.cpu_count() or 1)
    # Seconds any Redis call may take on the API side before it counts as down.
    # The caller gives up after 2 s, so this must stay far below that.
    api_redis_timeout: float = setting("API_REDIS_TIMEOUT_MS", milliseconds_as_seconds(10), 0.25)
    # Live metrics recording in each API process (docs/metrics.md): in-memory
    # counts and a latency histogram per request, flushed to Redis once a
    # second. `API_METRICS=0` turns both off (the dashboard and `/metrics` go
    # quiet); it exists to measure their overhead, which stays under 5%.
    api_metrics: bool = setting("API_METRICS", boolean, True)
    # Where the API processes of one host and port share their counts, so one
    # scrape of /metrics sees them all (ccadmin/api/host_counts.py). Unset: a
    # folder in the instance folder named for the port.
    api_metrics_dir: Path | None = setting("API_METRICS_DIR", path)
    # Pin each waitress process to one CPU of its affinity mask (docs/performance.md).
    # 0 where the mask is not this process's own: a container without
    # exclusive CPUs sees the host's, and every pod would pin to the same ones.
    api_pin_cpus: bool = setting("API_PIN_CPUS", boolean, True)
    # Caller addresses the API answers (CIDR ranges); empty answers every
    # address, keys still apply. X-Forwarded-For is believed only from
    # API_TRUSTED_PROXIES ranges (the platform's router).
    api_allowed_ips: tuple[IpNetwork, ...] = setting("API_ALLOWED_IPS", networks, ())
    api_trusted_proxies: tuple[IpNetwork, ...] = setting("API_TRUSTED_PROXIES", networks, ())
    # The endpoint's public base URL (e.g. https://content.example.com), used
    # in the Braze snippets the admin generates; unset, they show a placeholder.
    api_public_url: str | None = setting("CCADMIN_API_URL", base_url)
    # Reverse proxies in front of the admin, each adding one X-Forwarded-For/
    # -Proto value. 0 believes no such header, so a client cannot claim HTTPS
    # or another address by sending one itself.
    trusted_proxies: int = setting("CCADMIN_TRUSTED_PROXIES", integer(0), 0)
    # An admin session ends after this many minutes without a request and
    # this many hours after its login, whatever the activity.
    session_idle_minutes: int = setting("CCADMIN_SESSION_IDLE_MINUTES", integer(1), 30)
    session_max_hours: int = setting("CCADMIN_SESSION_MAX_HOURS", integer(1), 12)
    # Single sign-on (docs/security.md): the OpenID Connect provider's issuer
    # URL (discovery is read from its /.well-known/openid-configuration) and
    # this app's client there. Unset, the admin has password login only.
    oidc_issuer: str | None = setting("CCADMIN_OIDC_ISSUER", issuer_url)
    oidc_client_id: str | None = setting("CCADMIN_OIDC_CLIENT_ID", text)
    oidc_client_secret: str | None = setting("CCADMIN_OIDC_CLIENT_SECRET", text)
    # The label of the sign-in button ("Sign in with Okta").
    oidc_name: str = setting("CCADMIN_OIDC_NAME", text, "single sign-on")
    # Scopes asked for; Okta sends `groups` only when that scope is asked.
    oidc_scopes: str = setting("CCADMIN_OIDC_SCOPES", text, "openid email profile")
    # The ID token claim that lists the user's groups, and which of its values
    # give each role; the highest role a user's groups give wins. A user with
    # none of them is refused.
    oidc_role_claim: str = setting("CCADMIN_OIDC_ROLE_CLAIM", text, "groups")
    oidc_admin_groups: tuple[str, ...] = setting("CCADMIN_OIDC_ADMIN_GROUPS", word_list, ())
    oidc_editor_groups: tuple[str, ...] = setting("CCADMIN_OIDC_EDITOR_GROUPS", word_list, ())
    oidc_viewer_groups: tuple[str, ...] = setting("CCADMIN_OIDC_VIEWER_GROUPS", word_list, ())
    # Turn password login off, except for the one break-glass admin named
    # here, who can still sign in when the provider is down.
    sso_only: bool = setting("CCADMIN_SSO_ONLY", boolean, False)
    break_glass_email: str | None = setting("CCADMIN_BREAK_GLASS_EMAIL", lowercase)
    # The bearer token Prometheus sends to scrape the admin's /metrics (the
    # publishing pipeline); unset, that endpoint answers 404.
    metrics_token: str | None = setting("CCADMIN_METRICS_TOKEN", text)
    # Requests per minute each management token may make to /manage/v1; past
    # it, 429 with Retry-After. A batch counts as one request. 0 turns it off.
    manage_rate_limit: int = setting("CCADMIN_MANAGE_RATE_LIMIT", integer(0), 6000)
    # Seconds the worker lets its job in progress finish after SIGTERM before
    # interrupting it; it must end before the platform's SIGKILL (Heroku: 30 s).
    worker_shutdown_seconds: int = setting("WORKER_SHUTDOWN_SECONDS", integer(1), 20)
    # The worker's log level.
    log_level: str = setting("LOG_LEVEL", choice(LOG_LEVELS, upper=True), LOG_LEVELS[0])

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


def declared() -> tuple[dataclasses.Field, ...]:
    """The settings in declaration order."""
    return dataclasses.fields(Settings)


def private_directory(path: Path) -> Path:
    """Create `path` owner-only (0700), or tighten it: it holds the key, data and sockets.

    A shared directory with the sticky bit (such as /tmp) is left as it is.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = path.stat().st_mode
    if mode & 0o077 and not mode & stat.S_ISVTX:
        path.chmod(0o700)
    return path


def _read(declaration: dataclasses.Field, env: Mapping[str, str], so_far: dict[str, Any]) -> Any:
    names = declaration.metadata["env"]
    for name in names:
        raw = env.get(name)
        if raw is not None and raw.strip() != "":
            return declaration.metadata["parse"](name, raw)
    default = declaration.metadata["default"]
    return default(so_far) if callable(default) else default


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate settings; raises ConfigError with the variable's name."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for declaration in declared():
        values[declaration.name] = _read(declaration, env, values)
    if values["redis_read_urls"] and not values["redis_url"]:
        raise ConfigError("REDIS_READ_URLS needs REDIS_URL: the primary they replicate")
    if values["redis_read_urls"] and values["redis_cluster_urls"]:
        raise ConfigError("set REDIS_CLUSTER_URLS or REDIS_READ_URLS, not both")
    _check_single_sign_on(values)
    return Settings(**values)


def _check_single_sign_on(values: Mapping[str, Any]) -> None:
    """SSO settings that cannot work together fail at start-up, not at the first sign-in."""
    if values["oidc_issuer"]:
        for key, variable in (
            ("oidc_client_id", "CCADMIN_OIDC_CLIENT_ID"),
            ("oidc_client_secret", "CCADMIN_OIDC_CLIENT_SECRET"),
        ):
            if not values[key]:
                raise ConfigError(f"CCADMIN_OIDC_ISSUER needs {variable}")
        groups = ("oidc_admin_groups", "oidc_editor_groups", "oidc_viewer_groups")
        if not any(values[key] for key in groups):
            raise ConfigError(
                "CCADMIN_OIDC_ISSUER needs at least one of CCADMIN_OIDC_ADMIN_GROUPS, "
                "CCADMIN_OIDC_EDITOR_GROUPS, CCADMIN_OIDC_VIEWER_GROUPS: nobody could sign in"
            )
    if values["sso_only"]:
        if not values["oidc_issuer"]:
            raise ConfigError("CCADMIN_SSO_ONLY needs CCADMIN_OIDC_ISSUER")
        if not values["break_glass_email"]:
            raise ConfigError(
                "CCADMIN_SSO_ONLY needs CCADMIN_BREAK_GLASS_EMAIL: the admin who can sign in "
                "with a password while the identity provider is down"
            )
