"""A campaign's marketer tools: preview as the caller sees it, the Braze snippet, export.

Everyone logged in reads; the write actions on this page (revert, schedule,
coverage upload) need the editor role. The preview runs the real API code in
this process (ccadmin/content/preview.py), so what it shows is what the caller gets.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import chain, islice
from typing import Any

import redis
from flask import abort, current_app, flash, redirect, request, stream_with_context, url_for
from flask_admin import BaseView, expose
from rq.exceptions import NoSuchJobError
from rq.job import Job
from sqlalchemy import select
from werkzeug.wrappers import Response

from ccadmin import keys
from ccadmin.admin.base import AccessControlled, actor
from ccadmin.admin.change_requests import to_request
from ccadmin.admin.schedule_form import CLEAR_PREFIX, FIELD_PREFIX, LOADED_PREFIX, ScheduleInput
from ccadmin.approvals import workflow
from ccadmin.content import preview, snippets
from ccadmin.content.schema import REQUIRED_FIELD, user_id_error
from ccadmin.extensions import db
from ccadmin.imports import coverage, revert, scheduling
from ccadmin.imports.changesets import import_queue
from ccadmin.imports.parsing import FileProblem
from ccadmin.imports.progress import parse_run_at
from ccadmin.models import Campaign, ContentImport, ScheduledChange
from ccadmin.models.imports import STATUS_SCHEDULED
from ccadmin.models.users import ROLE_EDITOR
from ccadmin.redis_client import get_redis, get_store

# A coverage job's token, as coverage.stash makes it.
TOKEN_PATTERN = re.compile(r"[0-9a-f]{24}")


def coverage_job_id(token: str) -> str:
    return f"coverage-{token}"


def run_preview(campaign: Campaign, user_id: str) -> preview.Preview:
    """Preview one user's call with this app's settings and Redis."""
    settings = current_app.config["CCADMIN_SETTINGS"]
    return preview.preview(settings, get_store(settings), campaign, user_id)


def snippet_for(campaign: Campaign, auth: str) -> snippets.Snippet:
    """The campaign's Braze tag with the configured public API URL."""
    settings = current_app.config["CCADMIN_SETTINGS"]
    if auth not in snippets.AUTH_STYLES:
        auth = snippets.AUTH_HEADERS
    return snippets.connected_content_snippet(campaign, settings.api_public_url, auth)


class CampaignToolsView(AccessControlled, BaseView):
    """Preview, snippet and bulk tools of one campaign."""

    write_role = ROLE_EDITOR
    extra_read_endpoints = frozenset({"tools_view"})

    def is_visible(self) -> bool:
        """Reached from a campaign's page, not from the menu."""
        return False

    @expose("/")
    def index(self) -> Any:
        """No campaign chosen: there is nothing to show here."""
        abort(404)

    @expose("/<int:campaign_id>/")
    def tools_view(self, campaign_id: int) -> str:
        """The campaign's tools; `?user_id=` previews that user's call."""
        return self._render_tools(db.get_or_404(Campaign, campaign_id))

    def _render_tools(self, campaign: Campaign, **extra: Any) -> str:
        user_id = (request.args.get("user_id") or "").strip()
        result, problem = None, None
        if user_id:
            problem = user_id_error(user_id)
            if problem is None:
                result = run_preview(campaign, user_id)
        auth = request.args.get("auth", snippets.AUTH_HEADERS)
        scheduled_imports = db.session.scalars(
            select(ContentImport)
            .where(
                ContentImport.campaign_id == campaign.id,
                ContentImport.status == STATUS_SCHEDULED,
            )
            .order_by(ContentImport.scheduled_at)
        )
        changes = scheduling.pending_changes(campaign.id)
        return self.render(
            "admin/campaign_tools/tools.html",
            campaign=campaign,
            user_id=user_id,
            preview=result,
            preview_problem=problem,
            snippet=snippet_for(campaign, auth),
            auth=auth,
            auth_styles=snippets.AUTH_STYLES,
            limit=preview.CALLER_BODY_LIMIT,
            can_write=self.user_can_write(),
            scheduled_changes=changes,
            change_diffs=scheduling.change_diffs(campaign.id, changes),
            failed_changes=scheduling.recent_failures(campaign.id),
            schedule=extra.get("schedule") or ScheduleInput(),
            loaded_prefix=LOADED_PREFIX,
            clear_prefix=CLEAR_PREFIX,
            required_field=REQUIRED_FIELD,
            revert_at=extra.get("revert_at", ""),
            scheduled_imports=list(scheduled_imports),
            field_prefix=FIELD_PREFIX,
            coverage=extra.get("coverage"),
            coverage_ids=extra.get("coverage_ids", ""),
            coverage_download=extra.get("coverage_download"),
        )

    @expose("/<int:campaign_id>/revert", methods=("POST",))
    def revert_view(self, campaign_id: int) -> str | Response:
        """Stage the campaign's content as it was at a time, and show its preview."""
        campaign = db.get_or_404(Campaign, campaign_id)
        raw = (request.form.get("at") or "").strip()
        try:
            since = parse_run_at(raw, future=False)
            if since is None:
                raise ValueError("Choose the time to go back to.")
        except ValueError as error:
            flash(str(error), "error")
            return self._render_tools(campaign, revert_at=raw)
        change_set = revert.create_revert(campaign, since, actor())
        return redirect(url_for("imports.detail_view", import_id=change_set.id))

    @expose("/<int:campaign_id>/schedule", methods=("POST",))
    def schedule_view(self, campaign_id: int) -> str | Response:
        """Load the entry into the form, or save the change for the worker to apply at a time.

        A refused change shows the form again with everything typed and the
        reason on each field; nothing is cleared.
        """
        campaign = db.get_or_404(Campaign, campaign_id)
        typed = ScheduleInput.from_form(campaign, request.form)
        if request.form.get("action") == "load":
            return self._load_current(campaign, typed)
        try:
            run_at = parse_run_at(typed.run_at)
            if run_at is None:
                raise ValueError("Choose when the change goes live.")
        except ValueError as error:
            typed.errors = {"run_at": str(error)}
            return self._render_tools(campaign, schedule=typed)
        try:
            if workflow.needs_approval(campaign):
                change_request = workflow.open_schedule(
                    campaign, typed.user_id, typed.changed_values(), typed.clear, run_at, actor()
                )
                db.session.commit()
                return to_request(change_request)
            scheduling.schedule_change(
                campaign,
                typed.user_id,
                typed.changed_values(),
                typed.clear,
                run_at,
                actor(),
                get_redis(current_app.config["CCADMIN_SETTINGS"]),
            )
        except scheduling.ScheduleProblem as problem:
            typed.errors = problem.errors
            return self._render_tools(campaign, schedule=typed)
        except ValueError as error:
            flash(str(error), "error")
            return self._render_tools(campaign, schedule=typed)
        flash(f"Scheduled for {run_at:%Y-%m-%d %H:%M} UTC.", "success")
        return redirect(url_for(".tools_view", campaign_id=campaign_id))

    def _load_current(self, campaign: Campaign, typed: ScheduleInput) -> str:
        problem = user_id_error(typed.user_id)
        if problem:
            typed.errors = {"user_id": problem}
            return self._render_tools(campaign, schedule=typed)
        loaded = typed.with_current(scheduling.current_fields(campaign.id, typed.user_id))
        if not loaded.loaded:
            flash(
                f"User {typed.user_id} has no content in this campaign yet: "
                "the change will create it.",
                "info",
            )
        return self._render_tools(campaign, schedule=loaded)

    @expose("/<int:campaign_id>/cancel/<int:change_id>", methods=("POST",))
    def cancel_change_view(self, campaign_id: int, change_id: int) -> Response:
        """Cancel a scheduled change before its time."""
        change = db.session.get(ScheduledChange, change_id)
        if change is None or change.campaign_id != campaign_id:
            abort(404)
        try:
            scheduling.cancel_change(
                change, actor(), get_redis(current_app.config["CCADMIN_SETTINGS"])
            )
        except ValueError as error:
            flash(str(error), "error")
        else:
            flash("The scheduled change is cancelled; it will not be applied.", "success")
        return redirect(url_for(".tools_view", campaign_id=campaign_id))

    @expose("/<int:campaign_id>/coverage", methods=("POST",))
    def coverage_view(self, campaign_id: int) -> str | Response:
        """Of a list of user ids (uploaded or pasted), how many get content and how many
        the fallback; or, with `download`, the ids that get the fallback as CSV."""
        campaign = db.get_or_404(Campaign, campaign_id)
        upload = request.files.get("file")
        pasted = request.form.get("ids", "")
        if upload is not None and upload.filename:
            ids = coverage.user_ids(upload.stream)
        elif pasted.strip():
            ids = coverage.pasted_user_ids(pasted)
        else:
            flash("Paste user ids or choose a file of them.", "error")
            return redirect(url_for(".tools_view", campaign_id=campaign_id))
        store = get_store(current_app.config["CCADMIN_SETTINGS"])
        try:
            first = list(islice(ids, coverage.INLINE_LIMIT + 1))
        except FileProblem as problem:
            flash(str(problem), "error")
            return redirect(url_for(".tools_view", campaign_id=campaign_id))
        if len(first) > coverage.INLINE_LIMIT:
            return self._check_in_worker(campaign, chain(first, ids))
        ids = iter(first)
        if request.form.get("download"):
            response = Response(
                stream_with_context(coverage.uncovered_csv(store, campaign.slug, ids)),
                mimetype="text/csv",
            )
            response.headers["Content-Disposition"] = (
                f'attachment; filename="{campaign.slug}-without-content.csv"'
            )
            return response
        try:
            result = coverage.check_coverage(store, campaign.slug, ids)
        except FileProblem as problem:
            flash(str(problem), "error")
            return redirect(url_for(".tools_view", campaign_id=campaign_id))
        except (redis.RedisError, OSError):
            flash("Redis cannot be reached; the coverage cannot be checked now.", "error")
            return redirect(url_for(".tools_view", campaign_id=campaign_id))
        return self._render_tools(campaign, coverage=result, coverage_ids=pasted)

    def _check_in_worker(self, campaign: Campaign, ids: Iterator[str]) -> Response:
        """Stash a long list and queue its check; the page that follows shows progress."""
        connection = get_redis(current_app.config["CCADMIN_SETTINGS"])
        try:
            token, total = coverage.stash(connection, ids)
            import_queue(connection).enqueue(
                keys.JOB_CHECK_COVERAGE,
                campaign.slug,
                token,
                total,
                job_id=coverage_job_id(token),
                job_timeout=coverage.STASH_SECONDS,
                result_ttl=coverage.STASH_SECONDS,
            )
        except FileProblem as problem:
            flash(str(problem), "error")
            return redirect(url_for(".tools_view", campaign_id=campaign.id))
        except (redis.RedisError, OSError):
            flash("Redis cannot be reached; the coverage cannot be checked now.", "error")
            return redirect(url_for(".tools_view", campaign_id=campaign.id))
        return redirect(url_for(".coverage_job_view", campaign_id=campaign.id, token=token))

    @expose("/<int:campaign_id>/coverage/<token>")
    def coverage_job_view(self, campaign_id: int, token: str) -> str | Response:
        """A worker's coverage check: its progress, then its result."""
        campaign = db.get_or_404(Campaign, campaign_id)
        job = self._coverage_job(token)
        if job.is_finished:
            result = coverage.Coverage(**job.return_value())
            download = url_for(".coverage_download_view", campaign_id=campaign_id, token=token)
            return self._render_tools(campaign, coverage=result, coverage_download=download)
        if job.is_failed:
            flash("The coverage check failed; try again.", "error")
            return redirect(url_for(".tools_view", campaign_id=campaign_id))
        progress = job.get_meta(refresh=False).get("progress") or {"done": 0, "total": 0}
        return self.render(
            "admin/campaign_tools/coverage_progress.html", campaign=campaign, progress=progress
        )

    @expose("/<int:campaign_id>/coverage/<token>.csv")
    def coverage_download_view(self, campaign_id: int, token: str) -> Response:
        """The ids without content a worker's coverage check found, as CSV."""
        campaign = db.get_or_404(Campaign, campaign_id)
        if not self._coverage_job(token).is_finished:
            abort(404)
        connection = get_redis(current_app.config["CCADMIN_SETTINGS"])
        lines = coverage.ids_csv(coverage.stashed(connection, keys.coverage_uncovered_key(token)))
        response = Response(stream_with_context(lines), mimetype="text/csv")
        response.headers["Content-Disposition"] = (
            f'attachment; filename="{campaign.slug}-without-content.csv"'
        )
        return response

    @staticmethod
    def _coverage_job(token: str) -> Job:
        """The coverage job of `token`; 404 for a token that is not one, or expired."""
        if not TOKEN_PATTERN.fullmatch(token):
            abort(404)
        try:
            return Job.fetch(
                coverage_job_id(token),
                connection=get_redis(current_app.config["CCADMIN_SETTINGS"]),
            )
        except NoSuchJobError:
            abort(404)
