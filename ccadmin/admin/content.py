"""Per-user content: the list with its live (published) version, and the entry forms.

The form's inputs follow the chosen campaign's schema, so each field gets its
own length check and message. Deleting keeps the row as a tombstone version.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from flask import current_app, flash, g, redirect, request
from flask_admin import expose
from flask_admin.contrib.sqla.filters import DateTimeBetweenFilter, FilterEqual, IntEqualFilter
from flask_admin.helpers import get_form_data, get_redirect_target
from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Query
from werkzeug.wrappers import Response
from wtforms import SelectChoice, SelectField, StringField, TextAreaField
from wtforms.validators import ValidationError

from ccadmin import keys
from ccadmin.admin.base import AdminForm, actor
from ccadmin.admin.campaign_tools import run_preview
from ccadmin.admin.change_requests import RequestOpened
from ccadmin.admin.content_list import CampaignOptions, PublishStatusFilter, search_condition
from ccadmin.admin.keyset import KeysetModelView
from ccadmin.approvals import workflow
from ccadmin.content import history
from ccadmin.content.preview import CALLER_BODY_LIMIT
from ccadmin.content.schema import REQUIRED_FIELD, printable, user_id_error, validate_fields
from ccadmin.extensions import db
from ccadmin.models import Campaign, ContentEntry, OutboxEvent
from ccadmin.models.content import USER_ID_MAX_LENGTH
from ccadmin.models.users import ROLE_EDITOR
from ccadmin.publishing import entry_writes
from ccadmin.redis_client import get_store
from ccadmin.security.identifiers import record_id
from ccadmin.web.forms import MAX_LENGTH_ATTRIBUTE

log = logging.getLogger(__name__)

# Form inputs for schema fields are prefixed so no schema name can collide
# with the form's own inputs (campaign_id, user_id, csrf_token).
FIELD_PREFIX = "field_"
# Posted by static/admin/content-form.js when the campaign changes: the form
# comes back with the new campaign's inputs and everything typed kept.
CAMPAIGN_SWITCH = "switch_campaign"
MESSAGE_PREVIEW = 60
# A saved change not live after this long is waiting on the sweeper, not in flight.
PUBLISHING_WINDOW = timedelta(seconds=30)
STATUS_LIVE = "live"
STATUS_PUBLISHING = "publishing"
STATUS_PENDING = "pending"
STATUS_UNKNOWN = "unknown"
STATUS_FAILING = "publish failing"
_STATUS_BADGES = {
    STATUS_LIVE: "badge-success",
    STATUS_PUBLISHING: "badge-info",
    STATUS_PENDING: "badge-warning",
    STATUS_UNKNOWN: "badge-secondary",
    STATUS_FAILING: "badge-danger",
}


class EntryForm(AdminForm):
    """Base of the per-campaign entry forms built by ContentView."""

    campaign: Campaign | None = None
    # The tombstone a create revives, when the user had content before.
    tombstone: ContentEntry | None = None
    clean_fields: dict[str, str]

    def validate(self, extra_validators: Any = None) -> bool:
        """Field checks, then the campaign's schema, then (on create) duplicates."""
        valid = super().validate(extra_validators)
        if self.campaign is None:
            if "campaign_id" in self:
                self.campaign_id.errors.append("Create a campaign first.")
            return False
        values = {name: self[FIELD_PREFIX + name].data for name in self.campaign.field_names}
        self.clean_fields, errors = validate_fields(self.campaign.field_schema, values)
        for name, message in errors.items():
            field = self[FIELD_PREFIX + name]
            field.errors.append(message)
            field.data = _shown(field.data)
        valid = valid and not errors
        if "user_id" in self and not self.user_id.errors:
            valid = self._check_user_is_new() and valid
        return valid

    def _check_user_is_new(self) -> bool:
        existing = db.session.scalars(
            select(ContentEntry).where(
                ContentEntry.campaign_id == self.campaign.id,
                ContentEntry.user_id == self.user_id.data,
            )
        ).first()
        if existing is not None and not existing.deleted:
            self.user_id.errors.append(
                f"User {self.user_id.data!r} already has content in this campaign; "
                "edit that entry instead."
            )
            return False
        self.tombstone = existing
        return True


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


def _shown(value: Any) -> Any:
    # A refused value is shown again in its input; it must be text the page can encode.
    return printable(value) if isinstance(value, str) else value


def _validate_user_id(form: EntryForm, field: StringField) -> None:
    error = user_id_error(field.data)
    if error:
        field.data = _shown(field.data)
        raise ValidationError(error)


def entry_form_class(campaign: Campaign | None, creating: bool) -> type[EntryForm]:
    """A form with one input per field of the campaign's schema."""
    attrs: dict[str, Any] = {}
    if creating:
        attrs["campaign_id"] = SelectField(
            "Campaign",
            coerce=int,
            description="The inputs below follow the campaign you choose.",
        )
        attrs["user_id"] = StringField(
            "User id",
            filters=[_strip],
            validators=[_validate_user_id],
            description=f"Exactly as the caller sends it (1-{USER_ID_MAX_LENGTH} characters).",
        )
    else:
        attrs["campaign_display"] = StringField("Campaign", render_kw={"readonly": True})
        attrs["user_id_display"] = StringField("User id", render_kw={"readonly": True})
    for field in campaign.field_schema if campaign else []:
        required = "Required. " if field["name"] == REQUIRED_FIELD else ""
        attrs[FIELD_PREFIX + field["name"]] = TextAreaField(
            field["name"],
            description=f"{required}At most {field['max_length']} characters.",
            render_kw={
                "rows": 3 if field["max_length"] > 200 else 2,
                MAX_LENGTH_ATTRIBUTE: field["max_length"],
            },
        )
    return type("CampaignEntryForm", (EntryForm,), attrs)


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def publish_status(
    entry: ContentEntry, live_version: int | None, redis_up: bool, failing: bool = False
) -> str:
    """live / publish failing / publishing / pending (unknown when Redis cannot be asked)."""
    if not redis_up:
        return STATUS_UNKNOWN
    if live_version is not None and live_version >= entry.version:
        return STATUS_LIVE
    if failing:
        return STATUS_FAILING
    if datetime.now(UTC) - _aware(entry.updated_at) < PUBLISHING_WINDOW:
        return STATUS_PUBLISHING
    return STATUS_PENDING


def fetch_live_versions(entries: list[ContentEntry]) -> dict[int, int | None] | None:
    """Versions Redis serves for these entries, one pipelined round trip; None if down."""
    if not entries:
        return {}
    try:
        client = get_store(current_app.config["CCADMIN_SETTINGS"])
        pipe = client.pipeline(transaction=False)
        for entry in entries:
            pipe.hget(keys.entry_key(entry.campaign.slug, entry.user_id), keys.ENTRY_VERSION_FIELD)
        replies = pipe.execute()
    except (redis.RedisError, OSError) as error:
        log.warning("live versions unavailable: %s", error)
        return None
    return {
        entry.id: None if reply is None else int(reply)
        for entry, reply in zip(entries, replies, strict=True)
    }


def _live_versions(view: ContentView) -> dict[int, int | None] | None:
    if "ccadmin_live_versions" not in g:
        g.ccadmin_live_versions = fetch_live_versions(g.get("ccadmin_listed_entries", []))
    return g.ccadmin_live_versions


def _publish_errors() -> dict[int, str]:
    """Outbox event id -> last_error of the listed entries' unpublished events (one query)."""
    if "ccadmin_publish_errors" not in g:
        event_ids = [entry.last_event_id for entry in g.get("ccadmin_listed_entries", [])]
        rows = db.session.execute(
            select(OutboxEvent.id, OutboxEvent.last_error).where(
                OutboxEvent.id.in_([event_id for event_id in event_ids if event_id]),
                OutboxEvent.published_at.is_(None),
                OutboxEvent.last_error.is_not(None),
            )
        )
        g.ccadmin_publish_errors = dict(rows.all())
    return g.ccadmin_publish_errors


def _format_message(view: Any, context: Any, model: ContentEntry, name: str) -> str:
    message = str((model.fields or {}).get(REQUIRED_FIELD, ""))
    if len(message) > MESSAGE_PREVIEW:
        return message[: MESSAGE_PREVIEW - 1] + "…"
    return message


def _format_live_version(view: Any, context: Any, model: ContentEntry, name: str) -> str:
    live = _live_versions(view)
    if live is None:
        return "unknown"
    version = live.get(model.id)
    return "—" if version is None else str(version)


def _format_status(view: Any, context: Any, model: ContentEntry, name: str) -> Markup:
    live = _live_versions(view)
    error = _publish_errors().get(model.last_event_id)
    status = publish_status(model, (live or {}).get(model.id), live is not None, bool(error))
    badge = Markup('<span class="badge {}">{}</span>').format(_STATUS_BADGES[status], status)
    if status != STATUS_FAILING:
        return badge
    # format() escapes the error text (it quotes Redis's reply).
    return Markup('{}<br><small class="text-danger">{}</small>').format(badge, error)


class ContentView(KeysetModelView):
    """Everyone logged in reads; editors and admins create, edit and delete."""

    write_role = ROLE_EDITOR
    can_view_details = True
    can_export = True
    export_max_rows = 100_000
    record_noun = "content entries"
    create_template = "admin/content/create.html"
    details_template = "admin/content/details.html"
    column_list = (
        "user_id",
        "campaign",
        "message",
        "version",
        "live_version",
        "status",
        "updated_at",
        "updated_by",
    )
    column_details_list = ("user_id", "campaign", "fields", "version", "updated_at", "updated_by")
    column_export_list = ("campaign", "user_id", "fields", "version", "updated_at", "updated_by")
    column_labels = {"user_id": "User id", "live_version": "Live version"}
    column_formatters = {
        "campaign": lambda view, context, model, name: model.campaign.slug,
        "message": _format_message,
        "live_version": _format_live_version,
        "status": _format_status,
        "fields": lambda view, context, model, name: json.dumps(
            model.fields, ensure_ascii=False, indent=2
        ),
    }
    column_formatters_export = {
        "campaign": column_formatters["campaign"],
        "fields": lambda view, context, model, name: json.dumps(model.fields, ensure_ascii=False),
    }
    column_searchable_list = ("user_id",)
    column_sortable_list = ("user_id", "version", "updated_at")
    # The latest change first; its index also serves the time filter.
    column_default_sort = ("updated_at", True)
    column_filters = (
        IntEqualFilter(ContentEntry.campaign_id, "Campaign", options=CampaignOptions()),
        PublishStatusFilter(),
        FilterEqual(ContentEntry.updated_by, "Changed by"),
        DateTimeBetweenFilter(ContentEntry.updated_at, "Changed between (UTC)"),
    )

    def search_placeholder(self) -> str:
        return "User id, or text in the fields"

    def _apply_search(
        self, query: Query, count_query: Query | None, joins: dict, count_joins: dict, search: str
    ) -> tuple[Query, Query | None, dict, dict]:
        # Exact user id (its indexes), or words of the fields (the full-text index).
        condition = search_condition(search)
        query = query.filter(condition)
        if count_query is not None:
            count_query = count_query.filter(condition)
        return query, count_query, joins, count_joins

    def get_query(self) -> Query:
        """Tombstones are history, not content: hide them."""
        return super().get_query().filter(ContentEntry.deleted.is_(False))

    def get_one(self, id: Any) -> ContentEntry | None:
        entry = super().get_one(id)
        if entry is None or entry.deleted:
            return None
        return entry

    def get_list(self, *args: Any, **kwargs: Any) -> tuple[int | None, list[ContentEntry]]:
        """The page's rows, remembered so the live versions are fetched in one round trip."""
        count, entries = super().get_list(*args, **kwargs)
        g.ccadmin_listed_entries = list(entries)
        g.pop("ccadmin_live_versions", None)
        g.pop("ccadmin_publish_errors", None)
        return count, entries

    # Forms follow the campaign: chosen on create, fixed on edit.
    def _chosen_campaign(self) -> Campaign | None:
        raw = request.form.get("campaign_id") or request.args.get("campaign_id")
        campaign_id = record_id(raw)
        if campaign_id is not None:
            campaign = db.session.get(Campaign, campaign_id)
            if campaign is not None:
                return campaign
        return db.session.scalars(
            select(Campaign).order_by(Campaign.is_default.desc(), Campaign.slug)
        ).first()

    def create_form(self, obj: Any = None) -> EntryForm:
        campaign = self._chosen_campaign()
        form = entry_form_class(campaign, creating=True)(get_form_data(), obj=obj)
        form.campaign = campaign
        form.campaign_id.choices = [
            SelectChoice(campaign_id, f"{name} ({slug})")
            for campaign_id, slug, name in db.session.execute(
                select(Campaign.id, Campaign.slug, Campaign.name).order_by(Campaign.slug)
            )
        ]
        if campaign is not None and not form.campaign_id.raw_data:
            form.campaign_id.data = campaign.id
        return form

    def validate_form(self, form: EntryForm) -> bool:
        """A create form posted only to switch campaign is shown again, not saved."""
        if request.form.get(CAMPAIGN_SWITCH) and "campaign_id" in form:
            return False
        return super().validate_form(form)

    def edit_form(self, obj: ContentEntry | None = None) -> EntryForm:
        campaign = obj.campaign if obj is not None else None
        prefill = {
            FIELD_PREFIX + name: value for name, value in ((obj and obj.fields) or {}).items()
        }
        form = entry_form_class(campaign, creating=False)(get_form_data(), **prefill)
        form.campaign = campaign
        if obj is not None:
            form.campaign_display.data = str(campaign)
            form.user_id_display.data = obj.user_id
        return form

    def create_model(self, form: EntryForm) -> ContentEntry | bool:
        """Insert the entry at version 1, or revive the user's tombstone at its next version."""
        campaign_id, user_id = form.campaign.id, form.user_id.data
        self.ask_if_needed(form.campaign, user_id, "create", form.clean_fields)
        try:
            # The tombstone a create revives, locked; None for a new user.
            before = entry_writes.lock_entry(campaign_id, user_id) if form.tombstone else None
            saved = entry_writes.write_entry(
                campaign_id, user_id, form.clean_fields, actor(), "create", before
            )
            db.session.commit()
        except IntegrityError as error:
            db.session.rollback()
            if not self.user_has_entry(form.campaign.id, form.user_id.data):
                self.handle_view_exception(error)
                return False
            # Someone created the same user between our check and this insert.
            form.user_id.errors.append(
                f"User {form.user_id.data!r} already has content in this campaign."
            )
            return False
        except Exception as error:
            db.session.rollback()
            if not self.handle_view_exception(error):
                raise
            return False
        return db.session.get(ContentEntry, saved.id)

    @staticmethod
    def user_has_entry(campaign_id: int, user_id: str) -> bool:
        """Whether the campaign holds a row for this user (a tombstone counts)."""
        query = select(ContentEntry.id).where(
            ContentEntry.campaign_id == campaign_id, ContentEntry.user_id == user_id
        )
        return db.session.scalar(query) is not None

    def update_model(self, form: EntryForm, model: ContentEntry) -> bool:
        """Save new field values as the next version."""
        self.ask_if_needed(model.campaign, model.user_id, "update", form.clean_fields)
        return self.commit_or_report(lambda: self.write_version(model, form.clean_fields, "update"))

    @staticmethod
    def ask_if_needed(
        campaign: Campaign, user_id: str, action: str, fields: dict[str, Any]
    ) -> None:
        """On a campaign whose changes need approval, open a change request instead
        (committed) and raise RequestOpened, which sends the author to it; otherwise
        do nothing."""
        if not workflow.needs_approval(campaign):
            return
        change = workflow.EntryChange(user_id, action, fields)
        change_request = workflow.open_entries(campaign, [change], actor())
        db.session.commit()
        raise RequestOpened(change_request)

    def handle_action(self, return_view: str | None = None) -> Any:
        """A bulk delete touching a campaign whose changes need approval is refused whole."""
        if request.form.get("action") == "delete" and self.user_can_write():
            ids = [number for number in map(record_id, request.form.getlist("rowid")) if number]
            guarded = db.session.scalar(
                select(func.count())
                .select_from(ContentEntry)
                .join(Campaign, Campaign.id == ContentEntry.campaign_id)
                .where(ContentEntry.id.in_(ids), Campaign.changes_need_approval.is_(True))
            )
            if guarded:
                flash(
                    f"{guarded} of the selected entries are in campaigns whose changes need "
                    "approval; nothing was deleted. Delete those one by one: each becomes a "
                    "change request.",
                    "error",
                )
                return redirect(get_redirect_target() or self.get_url(".index_view"))
        return super().handle_action(return_view)

    @staticmethod
    def write_version(model: ContentEntry, fields: dict[str, Any], action: str) -> None:
        """The entry's next version, outbox and audit rows, on the row as it is now (locked)."""
        before = entry_writes.lock_entry(model.campaign_id, model.user_id)
        entry_writes.write_entry(model.campaign_id, model.user_id, fields, actor(), action, before)

    def render(self, template: str, **kwargs: Any) -> str:
        """The entry page also shows the entry's versions and what the caller gets."""
        if template == self.details_template and kwargs.get("model") is not None:
            entry = kwargs["model"]
            kwargs["versions"] = history.entry_versions(entry)
            kwargs["can_restore"] = self.can_edit
            kwargs["preview"] = run_preview(entry.campaign, entry.user_id)
            kwargs["preview_limit"] = CALLER_BODY_LIMIT
        return super().render(template, **kwargs)

    @expose("/restore/", methods=("POST",))
    def restore_view(self) -> Response:
        """Save an earlier version's fields as the entry's next version."""
        entry = self.get_one(request.form.get("id", ""))
        if entry is None:
            flash("That entry does not exist (or was deleted).", "error")
            return redirect(self.get_url(".index_view"))
        here = self.get_url(".details_view", id=entry.id)
        number = record_id(request.form.get("version"))
        version = history.find_version(entry, number) if number else None
        if version is None or version.deleted:
            flash("That version is not recorded, or is a deletion; nothing was restored.", "error")
            return redirect(here)
        clean, errors = validate_fields(entry.campaign.field_schema, version.fields)
        if errors:
            name, message = next(iter(errors.items()))
            flash(
                f"Version {number} no longer fits the campaign's fields ({name}: {message}).",
                "error",
            )
            return redirect(here)
        self.ask_if_needed(entry.campaign, entry.user_id, "restore", clean)
        if not self.commit_or_report(lambda: self.write_version(entry, clean, "restore")):
            return redirect(here)
        flash(f"Version {number} restored as version {entry.version}.", "success")
        return redirect(here)

    def delete_model(self, model: ContentEntry) -> bool:
        """Keep the row as a tombstone version, so no older publish can bring it back."""
        self.ask_if_needed(model.campaign, model.user_id, "delete", {})
        return self.commit_or_report(
            lambda: self.write_version(model, dict(model.fields or {}), "delete")
        )
