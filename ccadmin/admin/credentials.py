"""What API keys and management tokens share: a secret shown once, campaign scopes, revocation."""

from __future__ import annotations

from typing import Any

from flask import flash, make_response
from flask_admin import expose
from flask_admin.form import FormOpts
from flask_admin.helpers import get_form_data, get_redirect_target
from sqlalchemy import select
from werkzeug.wrappers import Response
from wtforms import SelectChoice

from ccadmin import publishing
from ccadmin.admin.base import AdminForm, ProtectedModelView, actor
from ccadmin.extensions import db
from ccadmin.models import Campaign
from ccadmin.models.types import utcnow
from ccadmin.models.users import ROLE_ADMIN
from ccadmin.security.identifiers import record_id


def _campaign_list(view: Any, context: Any, model: Any, name: str) -> str:
    return ", ".join(model.campaigns or [])


class CredentialView(ProtectedModelView):
    """Admins only; credentials are never edited or deleted, only revoked.

    A subclass names its form (with a `campaigns` field), the template that
    shows a new secret, its audit target type and noun, and says how to
    issue a credential and what the audit log keeps of one.
    """

    read_role = ROLE_ADMIN
    write_role = ROLE_ADMIN
    allow_edit = False
    allow_delete = False
    confirmed_actions = frozenset({"revoke"})
    can_view_details = True
    column_labels = {"campaigns": "Campaigns (empty: all)", "last_used_at": "Last used"}
    column_formatters = {"campaigns": _campaign_list}
    column_default_sort = ("id", True)

    form_class: type[AdminForm]
    created_template: str
    audit_type: str
    noun: str

    def issue(self, form: AdminForm) -> tuple[Any, str]:
        """A new (unsaved) credential from the valid form, and its secret."""
        raise NotImplementedError

    def snapshot(self, credential: Any) -> dict[str, Any]:
        """What the audit log keeps of a credential (never the secret or its hash)."""
        raise NotImplementedError

    def created_context(self, credential: Any) -> dict[str, Any]:
        """What the created page shows besides the secret."""
        raise NotImplementedError

    def changed(self) -> None:
        """In the transaction of a create or a revoke: what must follow it (nothing here)."""

    def get_create_form(self) -> type[AdminForm]:
        return self.form_class

    def create_form(self, obj: Any = None) -> AdminForm:
        form = self.form_class(get_form_data())
        form.campaigns.choices = [
            SelectChoice(slug)
            for slug in db.session.scalars(select(Campaign.slug).order_by("slug"))
        ]
        return form

    @expose("/new/", methods=("GET", "POST"))
    def create_view(self) -> Response | str:
        """Create a credential and show its secret on this one response only."""
        return_url = get_redirect_target() or self.get_url(".index_view")
        form = self.create_form()
        if self.validate_form(form):
            credential, secret = self.issue(form)

            def apply() -> None:
                db.session.add(credential)
                db.session.flush()
                self.changed()
                publishing.record_audit(
                    actor(),
                    "create",
                    self.audit_type,
                    credential.id,
                    None,
                    self.snapshot(credential),
                )

            if self.commit_or_report(apply):
                page = self.render(
                    self.created_template,
                    secret=secret,
                    return_url=return_url,
                    **self.created_context(credential),
                )
                response = make_response(page)
                # The secret exists nowhere else: keep it out of every cache.
                response.headers["Cache-Control"] = "no-store"
                return response
        return self.render(
            self.create_template,
            form=form,
            form_opts=FormOpts(widget_args=self.form_widget_args),
            return_url=return_url,
        )

    def live_credentials(self, ids: list[str]) -> list[Any]:
        """The selected credentials not revoked yet."""
        model = self.model
        chosen = db.session.scalars(
            select(model).where(model.id.in_([n for n in map(record_id, ids) if n is not None]))
        ).all()
        return [credential for credential in chosen if credential.revoked_at is None]

    def action_size(self, name: str, ids: list[str]) -> int:
        """A revoke changes only the selected credentials still live."""
        return len(self.live_credentials(ids))

    def revoke(self, ids: list[str]) -> None:
        """Set revoked_at on each selected credential; revoked ones stay listed."""
        live = self.live_credentials(ids)

        def apply() -> None:
            for credential in live:
                before = self.snapshot(credential)
                credential.revoked_at = utcnow()
                publishing.record_audit(
                    actor(),
                    "revoke",
                    self.audit_type,
                    credential.id,
                    before,
                    self.snapshot(credential),
                )
            if live:
                self.changed()

        if self.commit_or_report(apply):
            flash(f"{len(live)} {self.noun}(s) revoked.", "success")
