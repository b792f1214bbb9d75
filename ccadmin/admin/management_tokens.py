"""Management tokens for the ingest API: created with a secret shown once, then revoked."""

from __future__ import annotations

from typing import Any

from flask import url_for
from flask_admin.actions import action
from wtforms import (
    BooleanField,
    PasswordField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
)
from wtforms.validators import DataRequired, Length, Optional

from ccadmin.admin.base import AdminForm, actor
from ccadmin.admin.credentials import CredentialView
from ccadmin.models import ManagementToken
from ccadmin.models.credentials import hash_secret
from ccadmin.models.management_tokens import SCOPE_READ, SCOPE_WRITE, new_token_secret

# "ccm_" plus 8 characters: enough to tell tokens apart, far too little to guess one.
PREFIX_LENGTH = 12


def token_snapshot(token: ManagementToken) -> dict[str, Any]:
    """What the audit log keeps of a token (never the secret or its hash)."""
    return {
        "name": token.name,
        "prefix": token.prefix,
        "scope": token.scope,
        "campaigns": token.campaigns,
        "source": token.source,
        "signed": token.signing_secret is not None,
        "needs_approval": bool(token.needs_approval),
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
    source = StringField(
        "Source",
        validators=[Optional(), Length(max=200)],
        description=(
            "Writes that carry an event time are ordered per entry and per source: an older "
            "one is acknowledged and not applied. Empty: the token's name. Give a new token "
            "the old one's source when you rotate it."
        ),
    )
    needs_approval = BooleanField(
        "Changes need approval",
        description=(
            "On campaigns whose changes need approval, this token's writes become change "
            "requests (202 with their address) that a person approves in the admin."
        ),
    )
    signing_secret = PasswordField(
        "Signing secret",
        validators=[Optional(), Length(max=200)],
        description=(
            "The shared secret you set in Segment's Webhooks destination: the events endpoint "
            "then refuses bodies without its signature (X-Signature). Never shown again."
        ),
    )


class ManagementTokenView(CredentialView):
    """Tokens of the ingest API; it reads them from the database."""

    list_template = "admin/management_tokens/list.html"
    column_list = (
        "name",
        "prefix",
        "scope",
        "campaigns",
        "source",
        "needs_approval",
        "created_at",
        "created_by",
        "revoked_at",
        "last_used_at",
    )
    column_details_list = column_list
    column_sortable_list = ("name", "created_at", "revoked_at", "last_used_at")
    form_class = ManagementTokenForm
    created_template = "admin/management_tokens/created.html"
    audit_type = "management_token"
    noun = "token"
    record_noun = "management tokens"

    def issue(self, form: ManagementTokenForm) -> tuple[ManagementToken, str]:
        secret = new_token_secret()
        token = ManagementToken(
            name=form.name.data,
            prefix=secret[:PREFIX_LENGTH],
            secret_hash=hash_secret(secret),
            scope=form.scope.data,
            campaigns=list(form.campaigns.data) or None,
            source=form.source.data or None,
            signing_secret=form.signing_secret.data or None,
            needs_approval=form.needs_approval.data,
            created_by=actor(),
        )
        return token, secret

    def snapshot(self, credential: ManagementToken) -> dict[str, Any]:
        return token_snapshot(credential)

    def created_context(self, credential: ManagementToken) -> dict[str, Any]:
        return {"token": credential, "docs_url": url_for("manage.reference")}

    @action(
        "revoke",
        "Revoke",
        "Revoke the selected tokens? Systems using them are refused from the next request.",
    )
    def action_revoke(self, ids: list[str]) -> None:
        self.revoke(ids)
