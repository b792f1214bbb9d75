"""Campaigns: which fields entries have, what users without content get, which is `/data`."""

from __future__ import annotations

from typing import Any

from flask import flash
from flask_admin.helpers import get_form_data
from sqlalchemy import select
from wtforms import (
    BooleanField,
    IntegerField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, ValidationError

from ccadmin import publishing
from ccadmin.admin.base import AdminForm, ProtectedModelView, actor
from ccadmin.admin.campaign_tools import snippet_for
from ccadmin.content.schema import (
    DEFAULT_MAX_LENGTH,
    NOT_UNICODE,
    REQUIRED_FIELD,
    SchemaError,
    format_default_fields,
    format_schema,
    parse_default_fields,
    parse_schema,
    printable,
    unencodable,
)
from ccadmin.content.snippets import AUTH_HEADERS
from ccadmin.extensions import db
from ccadmin.models import Campaign, ContentEntry
from ccadmin.models.campaign import FALLBACK_DEFAULT, FALLBACK_NOT_FOUND, SLUG_PATTERN
from ccadmin.models.types import utcnow
from ccadmin.models.users import ROLE_ADMIN

MAX_AGE_LIMIT = 86400
HAS_CONTENT = (
    "Campaign {slug!r} still has content entries (deleted ones are kept as tombstones), "
    "so it cannot be deleted. Deactivate it instead: untick Active and save."
)

# What a user without content gets, in the list's words.
FALLBACK_WORDS = {FALLBACK_DEFAULT: "the default fields", FALLBACK_NOT_FOUND: "404, empty message"}


def campaign_snapshot(campaign: Campaign) -> dict[str, Any]:
    """What the audit log keeps of a campaign."""
    return {
        "slug": campaign.slug,
        "name": campaign.name,
        "field_schema": list(campaign.field_schema or []),
        "fallback_policy": campaign.fallback_policy,
        "default_fields": dict(campaign.default_fields or {}),
        "max_age": campaign.max_age,
        "public": bool(campaign.public),
        "active": bool(campaign.active),
        "is_default": bool(campaign.is_default),
        "changes_need_approval": bool(campaign.changes_need_approval),
        "version": campaign.version,
    }


class CampaignForm(AdminForm):
    """The campaign settings; the schema and default fields are edited as text."""

    slug = StringField(
        "Slug",
        validators=[DataRequired()],
        description="Lower-case letters, digits, - and _; used in /v1/<slug>. Fixed once created.",
    )
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    field_schema_text = TextAreaField(
        "Fields",
        default=f"{REQUIRED_FIELD}:{DEFAULT_MAX_LENGTH}",
        description=f"One field per line as name:max_length. {REQUIRED_FIELD!r} is required.",
        render_kw={"rows": 4},
    )
    fallback_policy = SelectField(
        "Users without content",
        choices=[
            SelectChoice(FALLBACK_DEFAULT, "Serve the default fields (has_content: false)"),
            SelectChoice(FALLBACK_NOT_FOUND, "Answer 404 (the message renders empty)"),
        ],
        default=FALLBACK_DEFAULT,
    )
    default_fields_text = TextAreaField(
        "Default fields",
        description="One per line as name=value, for users without content.",
        render_kw={"rows": 3},
    )
    max_age = IntegerField(
        "Cache max-age (seconds)",
        default=60,
        validators=[InputRequired(), NumberRange(min=0, max=MAX_AGE_LIMIT)],
    )
    public = BooleanField("Public (no API key needed)")
    active = BooleanField("Active", default=True)
    is_default = BooleanField("Served at /data (replaces the current one)")
    changes_need_approval = BooleanField(
        "Changes need approval",
        description="Edits, imports, reverts and scheduled changes of this campaign's content "
        "become change requests that someone other than their author approves.",
    )

    def validate_slug(self, field: StringField) -> None:
        if not SLUG_PATTERN.match(field.data or ""):
            raise ValidationError(
                "Use 1-63 lower-case letters, digits, - or _, starting with a letter or digit."
            )
        taken = db.session.scalar(select(Campaign.id).where(Campaign.slug == field.data))
        if taken is not None:
            raise ValidationError(f"A campaign with slug {field.data!r} already exists.")

    def validate_name(self, field: StringField) -> None:
        _refuse_unencodable(field)

    def validate_field_schema_text(self, field: TextAreaField) -> None:
        _refuse_unencodable(field)
        try:
            self.parsed_schema = parse_schema(field.data or "")
        except SchemaError as error:
            raise ValidationError(str(error)) from None

    def validate_default_fields_text(self, field: TextAreaField) -> None:
        schema = getattr(self, "parsed_schema", None)
        if schema is None:
            return  # the schema error is already shown
        try:
            self.parsed_defaults = parse_default_fields(field.data or "", schema)
        except SchemaError as error:
            field.data = printable(field.data)
            raise ValidationError(str(error)) from None


def _refuse_unencodable(field: StringField) -> None:
    """Refuse text with lone surrogates, shown back escaped so the page can be encoded."""
    if unencodable(field.data or ""):
        field.data = printable(field.data)
        raise ValidationError(NOT_UNICODE)


class CampaignEditForm(CampaignForm):
    """The slug names Redis keys and URLs, so it is shown but never changed."""

    slug = StringField("Slug", render_kw={"readonly": True}, description="Fixed once created.")

    def validate_slug(self, field: StringField) -> None:
        """Nothing to check: the posted value is ignored."""


class CampaignView(ProtectedModelView):
    """Readable by everyone logged in; only admins change campaigns."""

    write_role = ROLE_ADMIN
    record_noun = "campaigns"
    can_view_details = True
    can_export = True
    column_list = (
        "slug",
        "name",
        "active",
        "public",
        "is_default",
        "fallback_policy",
        "max_age",
        "version",
        "updated_at",
    )
    column_details_list = (
        *column_list,
        "changes_need_approval",
        "field_schema",
        "default_fields",
        "created_at",
    )
    column_export_list = column_details_list
    column_labels = {
        "is_default": "Serves /data",
        "fallback_policy": "Without content",
        "max_age": "Max-age (s)",
        "field_schema": "Fields",
    }
    column_formatters = {
        "fallback_policy": lambda view, context, model, name: FALLBACK_WORDS.get(
            model.fallback_policy, model.fallback_policy
        ),
        "field_schema": lambda view, context, model, name: format_schema(model.field_schema),
        "default_fields": lambda view, context, model, name: format_default_fields(
            model.default_fields
        ),
    }
    column_formatters_export = column_formatters
    column_searchable_list = ("slug", "name")
    column_sortable_list = ("slug", "name", "version", "updated_at")
    column_default_sort = "slug"
    details_template = "admin/campaigns/details.html"

    def render(self, template: str, **kwargs: Any) -> str:
        """The campaign page also shows its Braze snippet and a preview form."""
        if template == self.details_template and kwargs.get("model") is not None:
            kwargs["snippet"] = snippet_for(kwargs["model"], AUTH_HEADERS)
        return super().render(template, **kwargs)

    def get_create_form(self) -> type[CampaignForm]:
        return CampaignForm

    def get_edit_form(self) -> type[CampaignEditForm]:
        return CampaignEditForm

    def edit_form(self, obj: Campaign | None = None) -> CampaignEditForm:
        """Pre-fill the text areas from the stored schema and default fields."""
        return self._edit_form_class(
            get_form_data(),
            obj=obj,
            field_schema_text=format_schema(obj.field_schema if obj else []),
            default_fields_text=format_default_fields(obj.default_fields if obj else {}),
        )

    def create_model(self, form: CampaignForm) -> Campaign | bool:
        """Insert the campaign at version 1 with its outbox and audit events."""
        campaign = Campaign(slug=form.slug.data, version=1)
        if not self.commit_or_report(lambda: self._save(form, campaign, before=None)):
            return False
        return campaign

    def update_model(self, form: CampaignEditForm, model: Campaign) -> bool:
        """Apply the form, bump the version, publish and audit."""
        before = campaign_snapshot(model)
        return self.commit_or_report(lambda: self._save(form, model, before=before))

    def _save(self, form: CampaignForm, campaign: Campaign, before: dict | None) -> None:
        if form.is_default.data:
            # Clear the old flag and flush first: the unique index allows one default.
            self._clear_other_defaults(campaign)
        campaign.name = form.name.data
        campaign.field_schema = form.parsed_schema
        campaign.fallback_policy = form.fallback_policy.data
        campaign.default_fields = form.parsed_defaults
        campaign.max_age = form.max_age.data
        campaign.public = form.public.data
        campaign.active = form.active.data
        campaign.is_default = form.is_default.data
        campaign.changes_need_approval = form.changes_need_approval.data
        if before is not None:
            campaign.version = before["version"] + 1
        campaign.updated_at = utcnow()
        db.session.add(campaign)
        db.session.flush()
        publishing.record_campaign_change(campaign.id)
        publishing.record_audit(
            actor(),
            "create" if before is None else "update",
            "campaign",
            campaign.id,
            before,
            campaign_snapshot(campaign),
        )

    def _clear_other_defaults(self, campaign: Campaign) -> None:
        others = db.session.scalars(
            select(Campaign).where(Campaign.is_default.is_(True), Campaign.id != campaign.id)
            if campaign.id is not None
            else select(Campaign).where(Campaign.is_default.is_(True))
        ).all()
        for other in others:
            before = campaign_snapshot(other)
            other.is_default = False
            other.version += 1
            other.updated_at = utcnow()
            db.session.flush()
            publishing.record_campaign_change(other.id)
            publishing.record_audit(
                actor(), "update", "campaign", other.id, before, campaign_snapshot(other)
            )

    def delete_model(self, model: Campaign) -> bool:
        """Delete an empty campaign; one with entries is refused (deactivate it)."""
        has_entries = db.session.scalar(
            select(ContentEntry.id).where(ContentEntry.campaign_id == model.id).limit(1)
        )
        if has_entries is not None:
            flash(HAS_CONTENT.format(slug=model.slug), "error")
            return False
        campaign_id = model.id
        before = campaign_snapshot(model)

        def delete() -> None:
            db.session.delete(model)
            db.session.flush()
            # The worker finds the campaign gone and removes its published config.
            publishing.record_campaign_change(campaign_id)
            publishing.record_audit(actor(), "delete", "campaign", campaign_id, before, None)

        if not self.commit_or_report(delete):
            return False
        return True
