"""API keys for the endpoint: created with a server-made secret shown once, then revoked."""

from __future__ import annotations

from typing import Any

from flask_admin.actions import action
from wtforms import SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length

from ccadmin import publishing
from ccadmin.admin.base import AdminForm
from ccadmin.admin.credentials import CredentialView
from ccadmin.models import ApiKey
from ccadmin.models.api_keys import new_key_secret
from ccadmin.models.credentials import hash_secret

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


class ApiKeyView(CredentialView):
    """Endpoint keys; a change is published to Redis, where the API reads them."""

    column_list = ("name", "prefix", "campaigns", "created_at", "revoked_at", "last_used_at")
    column_details_list = column_list
    column_sortable_list = ("name", "created_at", "revoked_at")
    form_class = ApiKeyForm
    created_template = "admin/api_key_created.html"
    audit_type = "api_key"
    noun = "key"
    record_noun = "API keys"

    def issue(self, form: ApiKeyForm) -> tuple[ApiKey, str]:
        secret = new_key_secret()
        api_key = ApiKey(
            name=form.name.data,
            prefix=secret[:PREFIX_LENGTH],
            secret_hash=hash_secret(secret),
            campaigns=list(form.campaigns.data) or None,
        )
        return api_key, secret

    def snapshot(self, credential: ApiKey) -> dict[str, Any]:
        return key_snapshot(credential)

    def created_context(self, credential: ApiKey) -> dict[str, Any]:
        return {"api_key": credential}

    def changed(self) -> None:
        publishing.record_api_keys_change()

    @action(
        "revoke",
        "Revoke",
        "Revoke the selected keys? Callers using them are refused from now on.",
    )
    def action_revoke(self, ids: list[str]) -> None:
        self.revoke(ids)
