"""Management tokens for the ingest API: created with a secret shown once, then revoked."""

from __future__ import annotations

from typing import Any

from flask import flash, make_response, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.form import FormOpts
from flask_admin.helpers import get_form_data, get_redirect_target
from sqlalchemy import select
from werkzeug.wrappers import Response
from wtforms import SelectChoice, SelectField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length

from ccadmin import publishing
from ccadmin.admin.base import AdminForm, ProtectedModelView, actor
from ccadmin.extensions import db
from ccadmin.models import Campaign, ManagementToken
from ccadmin.models.api_keys import hash_secret
from ccadmin.models.management_tokens import SCOPE_READ, SCOPE_WRITE, new_token_secret
from ccadmin.models.types import utcnow
from ccadmin.models.users import ROLE_ADMIN

# "ccm_" plus 8 characters: enough to tell tokens apart, far too little to guess one.
PREFIX_LENGTH = 12


def token_snapshot(token: ManagementToken) -> dict[str, Any]:
    """What the audit log keeps of a token (never the secret or its hash)."""
    return {
        "name": token.name,
        "prefix": token.prefix,
        "scope": token.scope,
        "campaigns": token.campaigns,
        "revoked": token.revoked_at is not None,
    }


class ManagementTokenForm(AdminForm):
    """A name, read or write, and optionally the campaigns the token is limited to."""

    name = StringField(
        "Name",
        validators=[DataRequired(), Length(max=200)],
        description="Shown as the actor in the audit log for every change the token makes.",
    )
    scope = SelectField(
        "Scope",
        choices=[
            SelectChoice(SCOPE_READ, "read: list campaigns and read entries"),
            SelectChoice(SCOPE_WRITE, "write: also create, change, delete and import"),
        ],
        default=SCOPE_WRITE,
    )
    campaigns = SelectMultipleField(
        "Campaigns",
        description="Leave empty to allow every campaign.",
    )


class ManagementTokenView(ProtectedModelView):
    """Admins only; tokens are never edited or deleted, only revoked."""

    read_role = ROLE_ADMIN
    write_role = ROLE_ADMIN
    allow_edit = False
    allow_delete = False
    can_view_details = True
    list_template = "admin/management_tokens/list.html"
    column_list = (
        "name",
        "prefix",
        "scope",
        "campaigns",
        "created_at",
        "created_by",
        "revoked_at",
        "last_used_at",
    )
    column_details_list = column_list
    column_labels = {"campaigns": "Campaigns (empty: all)", "last_used_at": "Last used"}
    column_formatters = {
        "campaigns": lambda view, context, model, name: ", ".join(model.campaigns or []),
    }
    column_sortable_list = ("name", "created_at", "revoked_at", "last_used_at")
    column_default_sort = ("id", True)

    def get_create_form(self) -> type[ManagementTokenForm]:
        return ManagementTokenForm

    def create_form(self, obj: Any = None) -> ManagementTokenForm:
        form = ManagementTokenForm(get_form_data())
        form.campaigns.choices = [
            SelectChoice(slug)
            for slug in db.session.scalars(select(Campaign.slug).order_by("slug"))
        ]
        return form

    @expose("/new/", methods=("GET", "POST"))
    def create_view(self) -> Response | str:
        """Create a token and show its secret on this one response only."""
        return_url = get_redirect_target() or self.get_url(".index_view")
        form = self.create_form()
        if self.validate_form(form):
            secret = new_token_secret()
            token = ManagementToken(
                name=form.name.data,
                prefix=secret[:PREFIX_LENGTH],
                secret_hash=hash_secret(secret),
                scope=form.scope.data,
                campaigns=list(form.campaigns.data) or None,
                created_by=actor(),
            )

            def apply() -> None:
                db.session.add(token)
                db.session.flush()
                publishing.record_audit(
                    actor(), "create", "management_token", token.id, None, token_snapshot(token)
                )

            if self.commit_or_report(apply):
                response = make_response(
                    self.render(
                        "admin/management_tokens/created.html",
                        token=token,
                        secret=secret,
                        return_url=return_url,
                        docs_url=url_for("manage.reference"),
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
        "Revoke the selected tokens? Systems using them are refused from the next request.",
    )
    def action_revoke(self, ids: list[str]) -> None:
        """Set revoked_at on each selected token; revoked tokens stay listed."""
        tokens = db.session.scalars(
            select(ManagementToken).where(
                ManagementToken.id.in_([int(i) for i in ids if i.isdigit()])
            )
        ).all()
        live = [token for token in tokens if token.revoked_at is None]

        def apply() -> None:
            for token in live:
                before = token_snapshot(token)
                token.revoked_at = utcnow()
                publishing.record_audit(
                    actor(), "revoke", "management_token", token.id, before, token_snapshot(token)
                )

        if self.commit_or_report(apply):
            flash(f"{len(live)} token(s) revoked.", "success")
