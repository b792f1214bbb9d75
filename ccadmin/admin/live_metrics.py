"""The live metrics page, its JSON endpoint, requeueing failed worker jobs, and plotly.js.

The page is drawn with plotly and refreshed from the JSON endpoint; the data
comes from ccadmin/metrics/. plotly.js is the copy that ships inside the
pinned `plotly` package, served from here under a versioned URL with a long
cache life: no CDN, and no 4 MB file in the repository.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import plotly
import redis
from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    jsonify,
    redirect,
    request,
    send_file,
    url_for,
)
from flask_admin import Admin, BaseView, expose
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry
from werkzeug.wrappers import Response

from ccadmin import keys
from ccadmin.admin.base import AccessControlled, actor
from ccadmin.extensions import db
from ccadmin.metrics import figures, health, series, system
from ccadmin.publishing import record_audit
from ccadmin.redis_client import get_redis, get_store

log = logging.getLogger(__name__)

# Milliseconds between refreshes of the page (docs/metrics.md: every 1-2 s).
REFRESH_MS = 1500
MAX_CAMPAIGN_LENGTH = 63


def _redis() -> redis.Redis:
    """The queues' Redis (RQ's jobs and workers)."""
    return get_redis(current_app.config["CCADMIN_SETTINGS"])


def _store() -> redis.Redis:
    """The content store (metrics, campaigns, the ready marker)."""
    return get_store(current_app.config["CCADMIN_SETTINGS"])


def dashboard_data(range_name: str, campaign: str | None) -> dict[str, Any]:
    """Everything the page shows, as JSON: figures, the meter, system state."""
    connection = _store()
    now = time.time()
    traffic = series.read_range(connection, series.RANGES[range_name], campaign, now)
    minute = health.last_minute(connection, now)
    processes = system.api_processes(connection, minute, now)
    redis_state = system.redis_state(connection)
    published = {slug.decode("utf-8") for slug in connection.hkeys(keys.CAMPAIGNS)}
    seen = {row["campaign"] for row in traffic["campaigns"]}
    return {
        "generated_at": now,
        "range": range_name,
        "campaign": campaign,
        "campaign_options": sorted((published | seen) - {"-"}),
        "series": traffic,
        "meter": health.unhealthy_host_meter(minute),
        "processes": processes,
        "redis": redis_state,
        "publishing": {
            **system.outbox_backlog(),
            **system.set_aside_entries(),
            **system.rq_state(_redis()),
            **system.write_counts(connection),
        },
        "figures": figures.dashboard_figures(traffic, processes, redis_state),
    }


class LiveMetricsView(AccessControlled, BaseView):
    """What the endpoint and the publishing pipeline are doing, second by second.

    Every role may look; requeueing a failed job is an admin's write.
    """

    extra_read_endpoints = frozenset({"data"})

    @expose("/")
    def index(self) -> str:
        """The page; its script fetches `data` and redraws every REFRESH_MS."""
        return self.render(
            "admin/dashboards/live.html",
            ranges=series.RANGES.values(),
            default_range=series.DEFAULT_RANGE,
            refresh_ms=REFRESH_MS,
            can_requeue=self.user_can_write(),
        )

    @expose("/data")
    def data(self) -> Response:
        """The JSON the page redraws from: `?range=5m|1h|24h|14d&campaign=slug`."""
        range_name = request.args.get("range", series.DEFAULT_RANGE)
        if range_name not in series.RANGES:
            return _json_error(400, "unknown range")
        campaign = request.args.get("campaign") or None
        if campaign is not None and len(campaign) > MAX_CAMPAIGN_LENGTH:
            return _json_error(400, "campaign slug too long")
        try:
            document = dashboard_data(range_name, campaign)
        except redis.RedisError as error:
            log.warning("live metrics unavailable: %s", error)
            return _json_error(503, "Redis is unreachable: metrics are unavailable")
        response = jsonify(document)
        response.cache_control.no_store = True
        return response

    @expose("/requeue/<job_id>", methods=("POST",))
    def requeue(self, job_id: str) -> Response:
        """Put a failed worker job back on its queue (admin only, CSRF-checked, audited)."""
        connection = _redis()
        try:
            origin = Job.fetch(job_id, connection=connection).origin
            FailedJobRegistry(origin, connection=connection).requeue(job_id)
        except (NoSuchJobError, InvalidJobOperation):
            flash(f"Job {job_id} is no longer in the failed jobs.", "warning")
        except redis.RedisError:
            flash("Redis is unreachable: nothing was requeued.", "error")
        else:
            record_audit(actor(), "requeue", "rq_job", job_id)
            db.session.commit()
            flash(f"Job {job_id} requeued.", "success")
        return redirect(url_for(".index"))


def _json_error(status: int, message: str) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    return response


PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
# The URL carries the package version, so a year of caching is safe.
PLOTLY_MAX_AGE = 365 * 86_400

vendor = Blueprint("vendor", __name__)


@vendor.route(f"/vendor/plotly-{plotly.__version__}.min.js")
def plotly_js() -> Response:
    """The plotly.js bundled with the installed plotly package."""
    response = send_file(PLOTLY_JS, mimetype="text/javascript", max_age=PLOTLY_MAX_AGE)
    response.cache_control.public = True
    response.cache_control.immutable = True
    return response


def init_app(app: Flask, admin: Admin) -> None:
    """Add the live metrics page to the admin and serve plotly.js."""
    app.register_blueprint(vendor)
    admin.add_view(LiveMetricsView(name="Live metrics", endpoint="metrics", url="/admin/metrics"))
