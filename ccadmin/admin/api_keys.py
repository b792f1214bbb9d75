"""API keys for the endpoint: created with a server-made secret shown once, then revoked."""

from __future__ import annotations

from typing import Any

from flask import flash, make_response
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.form import FormOpts
from flask_admin.helpers import get_form_data, get_redirect_target
from sqlalchemy import select
from werkzeug.wrappers import Response
from wtforms import SelectChoice, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length

from ccadmin import publishing
from ccadmin.admin.base import AdminForm, ProtectedModelView, actor
from ccadmin.extensions import db
from ccadmin.models import ApiKey, Campaign
from ccadmin.models.api_keys import hash_secret, new_secret
from ccadmin.models.types import utcnow
from ccadmin.models.users import ROLE_ADMIN

# "cc_" plus 8 characters: enough to tell keys apart, far too little to guess one.
PREFIX_LENGTH = 11


def key_snapshot(api_key: ApiKey) -> dict[str, Any]:
    """What the audit log keeps of a key (never the secret or its hash)."""
    return {
        "name": api_key.name,
        "prefix": api_key.prefix,
        "campaigns": api_key.campaigns,
        "revoked": api_key.revoked_at is not None,
    }


class ApiKeyForm(AdminForm):
    """A name and, optionally, the campaigns the key is limited to."""

    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    campaigns = SelectMultipleField(
        "Campaigns",
        description="Leave empty to allow every campaign.",
    )


class ApiKeyView(ProtectedModelView):
    """Admins only; keys are never edited or deleted, only revoked."""

    read_role = ROLE_ADMIN
    write_role = ROLE_ADMIN
    allow_edit = False
    allow_delete = False
    can_view_details = True
    column_list = ("name", "prefix", "campaigns", "created_at", "revoked_at", "last_used_at")
    column_details_list = column_list
    column_labels = {"campaigns": "Campaigns (empty: all)"}
    column_formatters = {
        "campaigns": lambda view, context, model, name: ", ".join(model.campaigns or []),
    }
    column_sortable_list = ("name", "created_at", "revoked_at")
    column_default_sort = ("id", True)

    def get_create_form(self) -> type[ApiKeyForm]:
        return ApiKeyForm

    def create_form(self, obj: Any = None) -> ApiKeyForm:
        form = ApiKeyForm(get_form_data())
        form.campaigns.choices = [
            SelectChoice(slug)
            for slug in db.session.scalars(select(Campaign.slug).order_by("slug"))
        ]
        return form

    @expose("/new/", methods=("GET", "POST"))
    def create_view(self) -> Response | str:
        """Create a key and show its secret on this one response only."""
        return_url = get_redirect_target() or self.get_url(".index_view")
        form = self.create_form()
        if self.validate_form(form):
            secret = new_secret()
            api_key = ApiKey(
                name=form.name.data,
                prefix=secret[:PREFIX_LENGTH],
                secret_hash=hash_secret(secret),
                campaigns=list(form.campaigns.data) or None,
            )

            def apply() -> None:
                db.session.add(api_key)
                db.session.flush()
                publishing.record_api_keys_change()
                publishing.record_audit(
                    actor(), "create", "api_key", api_key.id, None, key_snapshot(api_key)
                )

            if self.commit_or_report(apply):
                response = make_response(
                    self.render(
                        "admin/api_key_created.html",
                        api_key=api_key,
                        secret=secret,
                        return_url=return_url,
                    )
                )
                # The secret exists nowhere else: keep it out of every cache.
                response.headers["Cache-Control"] = "no-store"
                return response
        return self.render(
            self.create_template,
            form=form,
            form_opts=FormOpts(widget_args=self.form_widget_args),
            return_url=return_url,
        )

    @action(
        "revoke",
        "Revoke",
        "Revoke the selected keys? Callers using them are refused from now on.",
    )
    def action_revoke(self, ids: list[str]) -> None:
        """Set revoked_at on each selected key; revoked keys stay listed."""
        keys = db.session.scalars(
            select(ApiKey).where(ApiKey.id.in_([int(i) for i in ids if i.isdigit()]))
        ).all()
        live = [api_key for api_key in keys if api_key.revoked_at is None]

        def apply() -> None:
            for api_key in live:
                before = key_snapshot(api_key)
                api_key.revoked_at = utcnow()
                publishing.record_audit(
                    actor(), "revoke", "api_key", api_key.id, before, key_snapshot(api_key)
                )
            if live:
                publishing.record_api_keys_change()

        if self.commit_or_report(apply):
            flash(f"{len(live)} key(s) revoked.", "success")
