"""Single sign-on with an OpenID Connect provider (Okta, Entra ID, Google, Keycloak, Auth0).

Authlib does the protocol: discovery, the authorization code flow with PKCE,
`state` and `nonce`, and the ID token's signature and claims against the
provider's keys (fetched again when a token names a key it has not seen, so
the provider can rotate them). This module decides who the user is here: the
role comes from a claim (CCADMIN_OIDC_ROLE_CLAIM) mapped by configuration at
every sign-in, a user with no mapped group is refused, and the first sign-in
creates the user (or links the password user with the same email).

Off unless CCADMIN_OIDC_ISSUER is set; docs/security.md explains the setup.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.flask_client import OAuth
from flask import Flask, abort, current_app, render_template, request, session, url_for
from flask_login import login_user
from joserfc.errors import JoseError
from sqlalchemy import func, select
from werkzeug.wrappers import Response

from ccadmin import publishing
from ccadmin.config import Settings
from ccadmin.extensions import db
from ccadmin.models import AdminUser
from ccadmin.models.types import utcnow
from ccadmin.models.users import ROLE_ADMIN, ROLE_EDITOR, ROLE_RANK, ROLE_VIEWER
from ccadmin.security import sessions

log = logging.getLogger(__name__)

# Who changes the audit log records when the provider's word changed a user.
SSO_ACTOR = "single sign-on"
# Where the page to return to waits while the browser is at the provider.
_NEXT = "_sso_next"
# Seconds a call to the provider (discovery, keys, token) may take.
PROVIDER_TIMEOUT = 10

oauth = OAuth()


class SignInRefused(Exception):
    """A sign-in that cannot go on: `reason` for the audit log, `message` for the person."""

    def __init__(
        self, reason: str, message: str, status: int = 403, email: str | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status
        self.email = email


@dataclass(frozen=True)
class Identity:
    """Who the provider says signed in, and the role their groups give here."""

    issuer: str
    subject: str
    email: str
    role: str


def init_app(app: Flask) -> None:
    """Bind Authlib's registry; the login blueprint holds the routes."""
    oauth.init_app(app)


def settings() -> Settings:
    return current_app.config["CCADMIN_SETTINGS"]


def enabled() -> bool:
    """True when an OpenID Connect provider is configured."""
    return bool(settings().oidc_issuer)


def password_login_allowed(email: str) -> bool:
    """False in SSO-only mode for everyone but the break-glass admin."""
    current = settings()
    return not current.sso_only or email == current.break_glass_email


def client() -> Any:
    """The Authlib client for the configured provider (registered once per configuration).

    It caches the discovery document and the provider's keys, so a sign-in
    costs one token request unless the keys rotated.
    """
    current = settings()
    identity = "|".join(
        (current.oidc_issuer or "", current.oidc_client_id or "", current.oidc_scopes)
    )
    name = "oidc_" + hashlib.sha256(identity.encode()).hexdigest()[:16]
    registered = oauth.create_client(name)
    if registered is None:
        registered = oauth.register(
            name,
            client_id=current.oidc_client_id,
            client_secret=current.oidc_client_secret,
            server_metadata_url=f"{current.oidc_issuer}/.well-known/openid-configuration",
            client_kwargs={
                "scope": current.oidc_scopes,
                "code_challenge_method": "S256",
                "default_timeout": PROVIDER_TIMEOUT,
            },
        )
    return registered


def start(next_url: str | None) -> Response:
    """Send the browser to the provider; Authlib keeps state, nonce and the PKCE verifier
    in the session for the callback."""
    if not enabled():
        abort(404)
    session[_NEXT] = next_url
    provider = client()
    try:
        return provider.authorize_redirect(url_for("auth.sso_callback", _external=True))
    except (requests.RequestException, ValueError) as error:
        log.warning("identity provider discovery failed: %s", error)
        raise SignInRefused(
            "sso_unreachable",
            f"{settings().oidc_name} cannot be reached right now. Try again in a minute, "
            "or ask an admin.",
            502,
        ) from error


def finish() -> tuple[AdminUser, str | None]:
    """Check the provider's answer and sign the user in; returns them and the page to go to.

    Raises SignInRefused for anything wrong: a forged or replayed answer
    (state), a token that is not for this sign-in (nonce, audience, issuer),
    expired, or signed by a key the provider does not publish.
    """
    if not enabled():
        abort(404)
    next_url = session.pop(_NEXT, None)
    provider = client()
    denied = request.args.get("error")
    if denied:
        # The person cancelled, or the provider would not sign them in here.
        _forget_pending(provider.name)
        reason = request.args.get("error_description") or denied
        raise SignInRefused(
            "sso_denied",
            f"{settings().oidc_name} did not sign you in ({reason[:200]}). Start again, or ask "
            "your administrator.",
            403,
        )
    try:
        token = provider.authorize_access_token()
        metadata = provider.load_server_metadata()
    except (AuthlibBaseError, JoseError) as error:
        log.warning("single sign-on refused: %s", error)
        _forget_pending(provider.name)
        raise SignInRefused(
            "sso_invalid",
            f"The answer from {settings().oidc_name} could not be verified ({_describe(error)}). "
            "Start the sign-in again.",
            400,
        ) from error
    except (requests.RequestException, ValueError) as error:
        log.warning("identity provider unreachable at sign-in: %s", error)
        raise SignInRefused(
            "sso_unreachable",
            f"{settings().oidc_name} cannot be reached right now. Try again in a minute.",
            502,
        ) from error
    if metadata.get("issuer", "").rstrip("/") != settings().oidc_issuer:
        raise SignInRefused(
            "sso_invalid", "The identity provider names another issuer than configured.", 400
        )
    claims = token.get("userinfo")
    if not claims:
        raise SignInRefused("sso_invalid", "The identity provider sent no ID token.", 400)
    user = sign_in(identity_from(claims, settings()))
    return user, next_url


def _forget_pending(name: str) -> None:
    """Drop every sign-in this browser started: after a forged or broken answer, the
    person starts again rather than the genuine answer being accepted later."""
    for key in [key for key in session if key.startswith(f"_state_{name}_")]:
        session.pop(key)


def _describe(error: Exception) -> str:
    description = getattr(error, "description", None) or getattr(error, "error", None)
    return str(description or error.__class__.__name__)


def identity_from(claims: dict[str, Any], current: Settings) -> Identity:
    """The person and their role here, from verified ID token claims."""
    email = claims.get("email")
    if not email and "@" in str(claims.get("preferred_username") or ""):
        # Entra ID sends the sign-in name, usually the address, by default.
        email = claims["preferred_username"]
    if not isinstance(email, str) or "@" not in email:
        raise SignInRefused(
            "sso_no_email",
            "The identity provider sent no email address: ask your administrator to release "
            "the `email` claim to this application.",
        )
    if claims.get("email_verified") is False:
        raise SignInRefused(
            "sso_unverified_email",
            "Your email address is not verified at the identity provider.",
            email=email,
        )
    email = email.strip().lower()
    role = role_for(_claim_values(claims.get(current.oidc_role_claim)), current)
    if role is None:
        raise SignInRefused(
            "sso_unmapped_group",
            "Your account is not in a group that may use ccadmin. Ask your administrator to "
            "add you to the group for admins, editors or viewers.",
            email=email,
        )
    return Identity(
        issuer=current.oidc_issuer or "", subject=str(claims["sub"]), email=email, role=role
    )


def _claim_values(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        return tuple(str(item) for item in value)
    return (str(value),)


def role_for(groups: tuple[str, ...], current: Settings) -> str | None:
    """The highest role any of `groups` gives, or None."""
    mapping = (
        (ROLE_ADMIN, current.oidc_admin_groups),
        (ROLE_EDITOR, current.oidc_editor_groups),
        (ROLE_VIEWER, current.oidc_viewer_groups),
    )
    given = [role for role, mapped in mapping if set(groups) & set(mapped)]
    return max(given, key=ROLE_RANK.__getitem__) if given else None


def sign_in(identity: Identity) -> AdminUser:
    """Find, link or create the user; apply the provider's role; start a session."""
    user = db.session.scalars(
        select(AdminUser).where(
            AdminUser.sso_issuer == identity.issuer, AdminUser.sso_subject == identity.subject
        )
    ).first()
    if user is None:
        user = _link_or_create(identity)
    if not user.active:
        raise SignInRefused(
            "inactive",
            "Your ccadmin account is deactivated. Ask an admin to reactivate it.",
            email=identity.email,
        )
    before = {"email": user.email, "role": user.role}
    if user.email != identity.email and _email_free(identity.email, user.id):
        user.email = identity.email
    user.role = identity.role
    after = {"email": user.email, "role": user.role}
    if after != before:
        publishing.record_audit(SSO_ACTOR, "update", "admin_user", user.id, before, after)
    sessions.start(user.id)
    login_user(user)
    user.last_login_at = utcnow()
    db.session.commit()
    return user


def _email_free(email: str, user_id: int | None) -> bool:
    query = select(AdminUser.id).where(func.lower(AdminUser.email) == email)
    if user_id is not None:
        query = query.where(AdminUser.id != user_id)
    return db.session.scalar(query) is None


def _link_or_create(identity: Identity) -> AdminUser:
    existing = db.session.scalars(
        select(AdminUser).where(func.lower(AdminUser.email) == identity.email)
    ).first()
    if existing is not None:
        if existing.sso_subject is not None:
            raise SignInRefused(
                "sso_email_taken",
                "Another single sign-on account already uses this email here. Ask an admin.",
                email=identity.email,
            )
        # A user an admin created (or a password user) signs in through the
        # provider for the first time: the account is theirs from now on.
        existing.sso_issuer = identity.issuer
        existing.sso_subject = identity.subject
        db.session.flush()
        publishing.record_audit(
            SSO_ACTOR,
            "update",
            "admin_user",
            existing.id,
            {"email": existing.email, "single_sign_on": False},
            {"email": existing.email, "single_sign_on": True},
        )
        return existing
    user = AdminUser(
        email=identity.email,
        password_hash="",
        role=identity.role,
        active=True,
        sso_issuer=identity.issuer,
        sso_subject=identity.subject,
    )
    db.session.add(user)
    db.session.flush()
    publishing.record_audit(
        SSO_ACTOR,
        "create",
        "admin_user",
        user.id,
        None,
        {"email": user.email, "role": identity.role, "single_sign_on": True},
    )
    return user


def refused_page(refusal: SignInRefused) -> tuple[str, int]:
    """The page a refused sign-in sees."""
    page = render_template(
        "auth/sso_refused.html", message=refusal.message, provider=settings().oidc_name
    )
    return page, refusal.status


def login_page_context() -> dict[str, Any]:
    """What the login page needs to offer single sign-on."""
    current = settings()
    return {
        "sso_enabled": bool(current.oidc_issuer),
        "sso_only": current.sso_only,
        "sso_name": current.oidc_name,
        "sso_url": url_for("auth.sso_start", next=request.args.get("next")),
    }
