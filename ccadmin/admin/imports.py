"""Bulk import, its preview, apply with progress, schedule, rollback, and the CSV export.

An upload only stores the file (in the database) and queues its staging;
the page shows the staging's progress, then the preview to confirm.

Everyone logged in reads (list, preview, progress, export); editors upload,
apply, schedule, cancel and roll back. Every POST carries the CSRF token; the
upload checks it itself, after raising the body limit for that one request
(the global check would parse the body first, under the app's smaller limit).
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import IO

from flask import (
    abort,
    flash,
    jsonify,
    make_response,
    redirect,
    request,
    stream_with_context,
    url_for,
)
from flask_admin import BaseView, expose
from flask_wtf.csrf import CSRFError, validate_csrf
from sqlalchemy import delete, select
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import secure_filename
from werkzeug.wrappers import Response
from wtforms.validators import ValidationError

from ccadmin.admin.base import AccessControlled, actor
from ccadmin.admin.change_requests import to_request
from ccadmin.admin.confirmation import Confirmation, confirmed
from ccadmin.approvals import workflow
from ccadmin.extensions import csrf, db
from ccadmin.imports import changesets, export, uploads
from ccadmin.imports.parsing import detect_format
from ccadmin.imports.progress import (
    STAGING_STATUSES,
    apply_job,
    import_state,
    job_stalled,
    parse_run_at,
    redis_connection,
)
from ccadmin.models import Campaign, ContentImport, ImportRow
from ccadmin.models.imports import (
    KIND_ROLLBACK,
    MODE_ALL,
    MODE_VALID_ONLY,
    STATUS_APPLIED,
    STATUS_APPLYING,
    STATUS_INVALID,
    STATUS_QUEUED,
    STATUS_READY,
    STATUS_RECEIVING,
    STATUS_SCHEDULED,
)
from ccadmin.models.users import ROLE_EDITOR
from ccadmin.security.identifiers import record_id

MAX_UPLOAD_BYTES = 200 * 1024 * 1024
# Room for the multipart envelope and the form's other fields.
_UPLOAD_OVERHEAD = 1024 * 1024
LIST_SIZE = 50


def file_size(stream: IO[bytes]) -> int:
    """Bytes of an uploaded file, measured without reading it (werkzeug spools it)."""
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    return size


class ImportView(AccessControlled, BaseView):
    """The bulk import pages."""

    write_role = ROLE_EDITOR
    extra_read_endpoints = frozenset({"detail_view", "status_view", "export_view"})

    def _campaigns(self) -> list[Campaign]:
        return list(db.session.scalars(select(Campaign).order_by(Campaign.slug)))

    @expose("/")
    def index(self) -> str:
        """Recent change sets (optionally of one campaign) and the upload form."""
        query = select(ContentImport).order_by(ContentImport.id.desc()).limit(LIST_SIZE)
        campaign_id = record_id(request.args.get("campaign_id"))
        if campaign_id:
            query = query.where(ContentImport.campaign_id == campaign_id)
        return self.render(
            "admin/imports/index.html",
            imports=list(db.session.scalars(query)),
            campaigns=self._campaigns(),
            chosen_campaign=campaign_id,
            max_upload_mb=MAX_UPLOAD_BYTES // (1024 * 1024),
            can_write=self.user_can_write(),
        )

    @expose("/upload", methods=("POST",))
    def upload_view(self) -> Response:
        """Store the file in the database and queue its staging; the page follows it.

        The request never reads the rows: a million of them take longer to
        validate than a platform's router waits, and the worker shares only
        the database with the web process (imports/uploads.py).
        """
        back = url_for(".index")
        request.max_content_length = MAX_UPLOAD_BYTES + _UPLOAD_OVERHEAD
        try:
            form, files = request.form, request.files
        except RequestEntityTooLarge:
            flash(f"The file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB.", "error")
            return redirect(back)
        try:
            validate_csrf(form.get("csrf_token"))
        except ValidationError as error:
            raise CSRFError(error.args[0]) from None
        campaign = db.session.get(Campaign, record_id(form.get("campaign_id")) or 0)
        upload = files.get("file")
        if campaign is None:
            flash("Choose a campaign.", "error")
            return redirect(back)
        if upload is None or not upload.filename:
            flash("Choose a file to upload.", "error")
            return redirect(back)
        if file_size(upload.stream) > MAX_UPLOAD_BYTES:
            flash(f"The file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB.", "error")
            return redirect(back)
        filename = secure_filename(upload.filename) or "upload.csv"
        content_import = changesets.new_import(campaign, filename, actor(), status=STATUS_RECEIVING)
        content_import.upload_format = detect_format(filename)
        content_import.upload_bytes = 0
        # Previewed first: the marketer applies it from the page.
        content_import.apply_when_staged = False
        db.session.commit()
        try:
            uploads.store_body(content_import, upload.stream)
            uploads.mark_received(content_import)
        except Exception:
            # The database went away mid-file: nothing worth keeping.
            uploads.discard(content_import.id)
            raise
        # Unreachable Redis: stored and marked received, the sweeper queues it.
        uploads.enqueue_ingest(content_import, redis_connection())
        return redirect(url_for(".detail_view", import_id=content_import.id))

    @expose("/<int:import_id>/")
    def detail_view(self, import_id: int) -> str:
        """The staging progress, then the preview, the apply choices and the apply's progress."""
        return self._render_detail(db.get_or_404(ContentImport, import_id))

    def _render_detail(
        self, content_import: ContentImport, apply_error: str = "", typed_run_at: str = ""
    ) -> str:
        """The detail page; a refused apply shows its reason and keeps the typed time."""
        state = import_state(content_import)
        return self.render(
            "admin/imports/detail.html",
            apply_error=apply_error,
            typed_run_at=typed_run_at,
            content_import=content_import,
            report=content_import.report or {},
            state=state,
            # Polled until the last batch is live, not only written.
            running=content_import.status in (STATUS_QUEUED, STATUS_APPLYING, *STAGING_STATUSES)
            or (content_import.status == STATUS_APPLIED and not state["live"]),
            can_write=self.user_can_write(),
            mode_all=MODE_ALL,
            mode_valid_only=MODE_VALID_ONLY,
            scheduled=content_import.status == STATUS_SCHEDULED,
            needs_approval=workflow.needs_approval(content_import.campaign),
            pending_request=workflow.pending_for_change_set(content_import.id),
        )

    @expose("/<int:import_id>/status")
    def status_view(self, import_id: int) -> Response:
        """Progress as JSON, polled by static/admin/import-progress.js."""
        response = jsonify(import_state(db.get_or_404(ContentImport, import_id)))
        response.headers["Cache-Control"] = "no-store"
        return response

    @expose("/<int:import_id>/apply", methods=("POST",))
    def apply_view(self, import_id: int) -> str | Response:
        """Queue the apply job now, or schedule it, once confirmed with its count."""
        content_import = db.get_or_404(ContentImport, import_id)
        here = url_for(".detail_view", import_id=import_id)
        typed_run_at = request.form.get("run_at", "")
        try:
            run_at = parse_run_at(typed_run_at)
        except ValueError as error:
            return make_response(self._render_detail(content_import, str(error), typed_run_at), 422)
        try:
            mode = request.form.get("mode", MODE_ALL)
            if not confirmed(content_import.writes):
                workflow.check_change_set(content_import, mode)
                return self._confirm_apply(content_import, mode, run_at, here)
            if workflow.needs_approval(content_import.campaign):
                change_request = workflow.open_change_set(content_import, mode, run_at, actor())
                db.session.commit()
                return to_request(change_request)
            changesets.start_apply(content_import, mode, actor(), redis_connection(), run_at)
        except ValueError as error:
            db.session.rollback()
            flash(str(error), "error")
            return redirect(here)
        if run_at is not None:
            flash(f"Scheduled for {run_at:%Y-%m-%d %H:%M} UTC.", "success")
        return redirect(here)

    def _confirm_apply(
        self, content_import: ContentImport, mode: str, run_at: datetime | None, back: str
    ) -> str:
        label = content_import.label
        when = f"at {run_at:%Y-%m-%d %H:%M} UTC" if run_at else "now"
        details = [
            f"{content_import.new_rows} new",
            f"{content_import.changed_rows} changed",
            f"{content_import.deleted_rows} deleted",
        ]
        if mode == MODE_VALID_ONLY and content_import.invalid_rows:
            details.append(f"{content_import.invalid_rows} invalid rows skipped")
        if workflow.needs_approval(content_import.campaign):
            details.append("The campaign's changes need approval: this opens a change request.")
        confirmation = Confirmation.for_request(
            title=f"Apply {label} #{content_import.id}?",
            question=(
                f"Applying this {label} {when} changes {content_import.writes} entries of "
                f"{content_import.campaign.slug}."
            ),
            count=content_import.writes,
            back_url=back,
            button=f"Apply: change {content_import.writes} entries",
            details=details,
        )
        return self.render("admin/confirm.html", confirmation=confirmation)

    @expose("/<int:import_id>/cancel", methods=("POST",))
    def cancel_view(self, import_id: int) -> Response:
        """Take a scheduled import off the schedule."""
        content_import = db.get_or_404(ContentImport, import_id)
        try:
            changesets.cancel_schedule(content_import, redis_connection())
        except ValueError as error:
            flash(str(error), "error")
        else:
            flash("The schedule is cancelled; nothing was applied.", "success")
        return redirect(request.form.get("next") or url_for(".detail_view", import_id=import_id))

    @expose("/<int:import_id>/rollback", methods=("POST",))
    def rollback_view(self, import_id: int) -> str | Response:
        """Undo what the change set wrote (a rollback's undo rolls forward), once confirmed."""
        content_import = db.get_or_404(ContentImport, import_id)
        here = url_for(".detail_view", import_id=import_id)
        stalled = job_stalled(content_import, apply_job(content_import))
        try:
            changesets.check_undoable(content_import, stalled)
            count = changesets.rollback_size(content_import)
            if not confirmed(count):
                return self._confirm_rollback(content_import, count, here)
            if workflow.needs_approval(content_import.campaign):
                rollback = changesets.create_rollback(content_import, actor(), stalled=stalled)
                change_request = workflow.open_change_set(rollback, MODE_ALL, None, actor())
                db.session.commit()
                return to_request(change_request)
            rollback = changesets.queue_rollback(
                content_import, actor(), redis_connection(), stalled=stalled
            )
        except ValueError as error:
            db.session.rollback()
            flash(str(error), "error")
            return redirect(here)
        return redirect(url_for(".detail_view", import_id=rollback.id))

    def _confirm_rollback(self, content_import: ContentImport, count: int, back: str) -> str:
        label = content_import.label
        if content_import.kind == KIND_ROLLBACK:
            title = f"Roll forward rollback #{content_import.id}?"
            question = (
                f"This re-applies what the rollback undid: {count} entries of "
                f"{content_import.campaign.slug} get back the version the rollback replaced."
            )
            button = f"Roll forward {count} entries"
        else:
            title = f"Roll back {label} #{content_import.id}?"
            question = (
                f"This restores {count} entries of {content_import.campaign.slug} to their "
                f"version before the {label}."
            )
            button = f"Roll back {count} entries"
        confirmation = Confirmation.for_request(
            title=title,
            question=question,
            count=count,
            back_url=back,
            button=button,
            details=["Entries edited since are left alone.", "It can be undone in turn."],
        )
        return self.render("admin/confirm.html", confirmation=confirmation)

    @expose("/<int:import_id>/resume", methods=("POST",))
    def resume_view(self, import_id: int) -> Response:
        """Queue a stalled apply again; it goes on after the last committed batch."""
        content_import = db.get_or_404(ContentImport, import_id)
        here = url_for(".detail_view", import_id=import_id)
        if not job_stalled(content_import, apply_job(content_import)):
            flash("This change set is not stalled.", "error")
            return redirect(here)
        content_import.status = STATUS_READY
        db.session.commit()
        try:
            changesets.start_apply(
                content_import, content_import.mode, actor(), redis_connection(), None
            )
        except ValueError as error:
            flash(str(error), "error")
        return redirect(here)

    @expose("/<int:import_id>/discard", methods=("POST",))
    def discard_view(self, import_id: int) -> Response:
        """Delete a previewed change set that will not be applied, with its staged rows."""
        content_import = db.get_or_404(ContentImport, import_id)
        label = content_import.label
        if content_import.status not in (STATUS_READY, STATUS_INVALID):
            flash(f"Only a {label} not applied can be discarded.", "error")
            return redirect(url_for(".detail_view", import_id=import_id))
        waiting = workflow.pending_for_change_set(import_id)
        if waiting is not None:
            flash(
                f"Change request #{waiting.id} asks to apply this {label}: it is withdrawn or "
                "rejected first.",
                "error",
            )
            return redirect(url_for(".detail_view", import_id=import_id))
        changesets.forget_undo(content_import)
        db.session.execute(delete(ImportRow).where(ImportRow.import_id == import_id))
        db.session.delete(content_import)
        db.session.commit()
        flash(f"{label.capitalize()} #{import_id} discarded.", "success")
        return redirect(url_for(".index"))

    @expose("/export/<int:campaign_id>.csv")
    def export_view(self, campaign_id: int) -> Response:
        """The campaign's content as CSV, streamed."""
        campaign = db.session.get(Campaign, campaign_id)
        if campaign is None:
            abort(404)
        body = export.export_csv(campaign.id, campaign.field_names)
        response = Response(stream_with_context(body), mimetype="text/csv")
        response.headers["Content-Disposition"] = (
            f'attachment; filename="{export.export_filename(campaign)}"'
        )
        response.headers["Cache-Control"] = "no-store"
        return response


# The upload checks the token itself, after raising the body limit (see above).
csrf.exempt(f"{__name__}.upload_view")
