"""Operator commands: `flask --app wsgi seed|create-user|create-api-key|publish|reconcile`.

Thin wrappers: the work lives in ccadmin/content/seed.py and in the worker package,
which is reached by dotted path because ccadmin never imports workers.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import click
import redis
from flask import Flask, current_app
from flask.cli import with_appcontext
from rq import SimpleWorker
from rq.utils import import_attribute
from sqlalchemy import func, select

from ccadmin import keys, publishing
from ccadmin.content import seed
from ccadmin.extensions import db
from ccadmin.models import AdminUser, ApiKey, Campaign, OutboxEvent
from ccadmin.models.api_keys import new_key_secret
from ccadmin.models.credentials import hash_secret
from ccadmin.models.users import ROLES
from ccadmin.publishing import reconcile_status
from ccadmin.publishing.wake import WAKE_KEYS
from ccadmin.redis_client import get_redis, get_store

# The command works chunk jobs itself, and looks for lost ones this often.
REBUILD_POLL_SECONDS = 1.0
# Seconds between heartbeats of the command's own RQ worker: the sweeper
# takes a worker silent for 10 s for dead and runs its chunk again.
REBUILD_HEARTBEAT_SECONDS = 2.0
MIN_PASSWORD_LENGTH = 12
CLI_ACTOR = "cli"


def init_app(app: Flask) -> None:
    """Register the commands on the app's CLI."""
    for command in (seed_command, create_user, create_api_key, publish, reconcile):
        app.cli.add_command(command)


def _run_worker_function(dotted_path: str, *args: Any, **kwargs: Any) -> Any:
    """Run a worker function here and now, in this app context."""
    function: Callable[..., Any] = import_attribute(dotted_path)
    return function(*args, **kwargs)


@click.command("seed")
@click.option("--users", type=click.IntRange(min=1), required=True, help="Seed user ids 1..N.")
@click.option("--campaign", "campaign_slug", default="default", show_default=True)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=seed.DEFAULT_BATCH_SIZE, show_default=True
)
@with_appcontext
def seed_command(users: int, campaign_slug: str, batch_size: int) -> None:
    """Create or update N users' content in a campaign (random 140-character messages)."""
    started = time.monotonic()
    try:
        with click.progressbar(length=users, label=f"Seeding {campaign_slug}") as bar:
            report = seed.seed_content(campaign_slug, users, batch_size, progress=bar.update)
    except seed.SeedError as error:
        raise click.UsageError(str(error)) from None
    seconds = time.monotonic() - started
    click.echo(
        f"Seeded {report.users} users into campaign {report.campaign!r} in {seconds:.1f} s "
        f"({report.batches} outbox events; the worker publishes them)."
    )


@click.command("create-user")
@click.argument("email")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--password", help="Else CCADMIN_ADMIN_PASSWORD, else prompted.")
@with_appcontext
def create_user(email: str, role: str, password: str | None) -> None:
    """Create an admin user, or update the password and role of an existing one."""
    password = password or current_app.config["CCADMIN_SETTINGS"].admin_password
    if not password:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.UsageError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    email = email.strip().lower()
    user = db.session.execute(select(AdminUser).where(AdminUser.email == email)).scalar()
    action = "update" if user else "create"
    if user is None:
        user = AdminUser(email=email)
        db.session.add(user)
    user.role = role
    user.active = True
    user.set_password(password)
    db.session.flush()
    publishing.record_audit(
        CLI_ACTOR, action, "admin_user", user.id, after={"email": email, "role": role}
    )
    db.session.commit()
    click.echo(f"{'Updated' if action == 'update' else 'Created'} {role} {email}.")


@click.command("create-api-key")
@click.argument("name")
@click.option(
    "--campaign", "campaigns", multiple=True, help="Allowed campaign slug (repeat); default all."
)
@click.option("--secret", help="Register this key instead of generating one.")
@with_appcontext
def create_api_key(name: str, campaigns: tuple[str, ...], secret: str | None) -> None:
    """Create an API key for the endpoint; the secret is printed once, only its hash is kept."""
    known = set(db.session.execute(select(Campaign.slug)).scalars())
    unknown = sorted(set(campaigns) - known)
    if unknown:
        raise click.UsageError(f"unknown campaign(s): {', '.join(unknown)}")
    secret = secret or new_key_secret()
    secret_hash = hash_secret(secret)
    if db.session.execute(select(ApiKey.id).where(ApiKey.secret_hash == secret_hash)).first():
        raise click.UsageError("this secret is already registered")
    api_key = ApiKey(
        name=name,
        prefix=secret[:8],
        secret_hash=secret_hash,
        campaigns=sorted(set(campaigns)) or None,
    )
    db.session.add(api_key)
    db.session.flush()
    publishing.record_api_keys_change()
    publishing.record_audit(
        CLI_ACTOR, "create", "api_key", api_key.id, after={"name": name, "prefix": api_key.prefix}
    )
    db.session.commit()
    click.echo(f"API key {name!r} created. Its secret, shown only this once:")
    click.echo(secret)


@click.command("publish")
@click.option("--all", "rebuild", is_flag=True, help="Rebuild Redis from the database now.")
@click.option(
    "--pending", is_flag=True, help="Wake the workers to publish every unpublished outbox event."
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    help="With --all: entry ids per chunk job (default: the worker's, 50,000).",
)
@with_appcontext
def publish(rebuild: bool, pending: bool, chunk_size: int | None) -> None:
    """Publish to Redis: a full rebuild (--all) or the pending outbox events (--pending)."""
    if rebuild == pending:
        raise click.UsageError("give exactly one of --all or --pending")
    if rebuild:
        _rebuild({} if chunk_size is None else {"chunk_size": chunk_size})
        return
    pending_count = db.session.execute(
        select(func.count()).where(OutboxEvent.published_at.is_(None))
    ).scalar_one()
    try:
        publishing.wake_drainers(
            get_redis(current_app.config["CCADMIN_SETTINGS"]), WAKE_KEYS.keys()
        )
    except (redis.RedisError, OSError) as error:
        raise click.ClickException(f"Redis is unreachable; no worker was woken: {error}") from None
    click.echo(f"Woke the workers for {pending_count} unpublished outbox events.")


def _rebuild(options: dict[str, Any]) -> None:
    """Start a full rebuild and work its chunk jobs here, beside any running worker,
    until it has set the ready marker."""
    started = time.monotonic()
    try:
        status = _run_worker_function(keys.JOB_START_REBUILD, **options)
    except RuntimeError as error:  # another rebuild holds the lock
        raise click.ClickException(str(error)) from None
    if not status["finished"]:
        click.echo(
            f"Full rebuild {status['rebuild_id']}: {status['chunks']} chunks of "
            f"{status['chunk_size']:,} ids, worked here and by every running worker."
        )
        _work_rebuild(status)
    ready = get_store(current_app.config["CCADMIN_SETTINGS"]).get(keys.READY)
    if ready is None:
        raise click.ClickException("the rebuild finished but the ready marker is gone; run again")
    report = json.loads(ready)
    seconds = time.monotonic() - started
    click.echo(
        f"Rebuilt Redis in {seconds:.1f} s: {report['entries']} entries "
        f"({report['written']} written, {report['stale']} already current) "
        f"in {report['chunks']} chunk(s) by {report['workers']} worker(s), "
        f"{report['campaigns']} campaigns, {report['api_keys']} API keys; ready."
    )


def _work_rebuild(status: dict[str, Any]) -> None:
    settings = current_app.config["CCADMIN_SETTINGS"]
    connection = get_redis(settings)
    shown = status["chunks_done"]
    with click.progressbar(length=status["chunks"], label="Rebuilding") as bar:
        bar.update(shown)
        while True:
            _work_chunk_jobs(connection)
            current = reconcile_status.rebuild_progress()
            if current is None or current["rebuild_id"] != status["rebuild_id"]:
                raise click.ClickException("the rebuild was replaced (Redis emptied?); run again")
            bar.update(current["chunks_done"] - shown)
            shown = current["chunks_done"]
            if current["finished"]:
                return
            _run_worker_function(keys.JOB_ENSURE_READY, get_store(settings))
            time.sleep(REBUILD_POLL_SECONDS)


def _work_chunk_jobs(connection: redis.Redis) -> None:
    """Run the queued chunk jobs in this process (an RQ worker in burst mode)."""
    worker = SimpleWorker([keys.REBUILD_QUEUE], connection=connection)
    stopping = threading.Event()

    def beat() -> None:
        while not stopping.wait(REBUILD_HEARTBEAT_SECONDS):
            if connection.exists(worker.key):
                worker.heartbeat()

    heartbeat = threading.Thread(target=beat, name="heartbeat", daemon=True)
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    heartbeat.start()
    try:
        worker.work(burst=True, logging_level=None)
    finally:
        stopping.set()
        heartbeat.join()
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


@click.command("reconcile")
@with_appcontext
def reconcile() -> None:
    """Compare database versions with Redis and repair every difference."""
    started = time.monotonic()
    report = _run_worker_function(keys.JOB_RECONCILE)
    seconds = time.monotonic() - started
    checked = report.get("entries_checked", 0)
    click.echo(f"Reconciled in {seconds:.1f} s: checked {checked} entries.")
    for name, count in report.items():
        click.echo(f"  {name}: {count}")
