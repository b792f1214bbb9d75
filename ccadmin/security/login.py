"""Logging in and out of the admin (Flask-Login sessions, hashed passwords).

Every failed login is audited and counted (ccadmin/security/login_limits.py);
the message never says whether the email exists. A successful login starts a
new server-side session (ccadmin/security/sessions.py) and rehashes a password
stored with older hash parameters.
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_user, logout_user
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers import Response
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from ccadmin import publishing
from ccadmin.extensions import db, login_manager
from ccadmin.models import AdminUser
from ccadmin.models.types import utcnow
from ccadmin.security import login_limits, sessions, single_sign_on
from ccadmin.web.forms import UntruncatedForm

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

LOGIN_FAILED = "Invalid email or password."
LOGIN_THROTTLED = "Too many failed logins."
PASSWORD_LOGIN_OFF = "Password login is off here: use the single sign-on button."
# Checked when no user matches, so an unknown email costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not-a-real-password")
# werkzeug's current method and parameters ("scrypt:32768:8:1"): a stored hash
# with anything else is replaced at the next successful login.
CURRENT_HASH_METHOD = _DUMMY_HASH.split("$", 1)[0]
# Who failed logins are recorded as: the typed email is unverified input.
ANONYMOUS = "anonymous"


class LoginForm(UntruncatedForm):
    """Email and password; CSRF comes with Flask-WTF."""

    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


def init_app(app: Flask) -> None:
    """Register the login pages and tell Flask-Login how to find users."""
    login_manager.login_view = "auth.login"
    login_manager.user_loader(load_user)
    login_manager.unauthorized_handler(unauthorized)
    single_sign_on.init_app(app)
    app.register_blueprint(bp)


def load_user(user_id: str) -> AdminUser | None:
    """Flask-Login's user loader: ended sessions and inactive users are logged out."""
    if not sessions.is_valid(user_id):
        return None
    try:
        user = db.session.get(AdminUser, int(user_id))
    except ValueError:
        return None
    if user is None or not user.active:
        return None
    return user


def needs_rehash(password_hash: str) -> bool:
    """True when a hash was made with other parameters than werkzeug's current default."""
    return password_hash.split("$", 1)[0] != CURRENT_HASH_METHOD


def unauthorized() -> Response:
    """Not logged in: pages send the browser to the login form, writes get 401."""
    if request.method in ("GET", "HEAD"):
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    abort(401)


def safe_next_url(target: str | None) -> str | None:
    """`target` if it stays on this site, else None (no open redirects)."""
    if not target:
        return None
    target = target.strip()
    # Browsers read a backslash as a slash, so "/\\evil.example" leaves the site.
    if "\\" in target or any(ord(char) < 32 for char in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        if parts.scheme not in ("http", "https") or parts.netloc != request.host:
            return None
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        parts = urlsplit(target)
    if not parts.path.startswith("/") or parts.path.startswith("//"):
        return None
    return target


def find_user(email: str) -> AdminUser | None:
    """The user with this email, ignoring case and surrounding spaces."""
    normalized = email.strip().lower()
    return db.session.scalars(
        select(AdminUser).where(func.lower(AdminUser.email) == normalized)
    ).first()


def throttled_message(seconds: int) -> str:
    """When a blocked login may try again, in minutes and as a UTC time."""
    minutes = max(1, math.ceil(seconds / 60))
    until = (utcnow() + timedelta(seconds=seconds)).strftime("%H:%M UTC")
    plural = "s" if minutes != 1 else ""
    return (
        f"{LOGIN_THROTTLED} Try again in {minutes} minute{plural} (from {until}), "
        "or ask an admin to unlock the account."
    )


def _login_page(form: LoginForm, next_url: str | None) -> str:
    return render_template(
        "auth/login.html", form=form, next_url=next_url, **single_sign_on.login_page_context()
    )


@bp.route("/")
def index() -> Response:
    """The site root is the admin."""
    return redirect(url_for("admin.index"))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    """Show the login form; on success go to `next` if it stays on this site."""
    next_url = safe_next_url(request.args.get("next"))
    if current_user.is_authenticated:
        return redirect(next_url or url_for("admin.index"))
    form = LoginForm()
    if not form.validate_on_submit():
        return _login_page(form, next_url)
    email = form.email.data.strip().lower()
    address = request.remote_addr or ""
    if not single_sign_on.password_login_allowed(email):
        # The password is not checked: in SSO-only mode it proves nothing here.
        _audit_failure(email, None, "sso_only")
        flash(PASSWORD_LOGIN_OFF, "danger")
        return _login_page(form, next_url), 403
    wait = login_limits.blocked_for(email, address)
    if wait is not None:
        # The password is not even checked: guesses stop counting as guesses.
        _audit_failure(email, None, "throttled")
        flash(throttled_message(wait), "danger")
        return _login_page(form, next_url), 429
    user = find_user(email)
    # A user created by single sign-on has no password; the dummy hash keeps
    # the time the same as a wrong password.
    has_password = user is not None and user.has_password
    password_ok = (
        check_password_hash(user.password_hash if has_password else _DUMMY_HASH, form.password.data)
        and has_password
    )
    if user is None or not password_ok or not user.active:
        login_limits.record_failure(email, address)
        if user is None:
            reason = "unknown_email"
        elif not has_password:
            reason = "no_password"
        elif not password_ok:
            reason = "wrong_password"
        else:
            reason = "inactive"
        _audit_failure(email, user, reason)
        flash(LOGIN_FAILED, "danger")
        return _login_page(form, next_url)
    login_limits.record_success(email)
    if needs_rehash(user.password_hash):
        user.set_password(form.password.data)
    sessions.start(user.id)
    login_user(user)
    user.last_login_at = utcnow()
    if single_sign_on.settings().sso_only:
        # The break-glass admin: every use should be looked into.
        publishing.record_audit(user.email, "break_glass_login", "admin_user", user.id)
    db.session.commit()
    # Successful logins and logouts go to the log; the audit log records
    # changes and refusals, and the user's last login time is on their record.
    log.info("admin login: user %s from %s", user.id, address)
    return redirect(next_url or url_for("admin.index"))


@bp.route("/login/sso")
def sso_start() -> Response | tuple[str, int]:
    """Start a sign-in at the identity provider (GET: the provider's `state` guards the return)."""
    try:
        return single_sign_on.start(safe_next_url(request.args.get("next")))
    except single_sign_on.SignInRefused as refusal:
        return _refuse_sign_in(refusal)


@bp.route("/login/sso/callback")
def sso_callback() -> Response | tuple[str, int]:
    """Where the provider sends the browser back with a code (or an error)."""
    try:
        user, next_url = single_sign_on.finish()
    except single_sign_on.SignInRefused as refusal:
        return _refuse_sign_in(refusal)
    log.info("admin login: user %s from %s (single sign-on)", user.id, request.remote_addr)
    return redirect(next_url or url_for("admin.index"))


def _refuse_sign_in(refusal: single_sign_on.SignInRefused) -> tuple[str, int]:
    # Nothing a refused sign-in began (a user linked or created) is kept.
    db.session.rollback()
    _audit_failure(refusal.email, None, refusal.reason)
    return single_sign_on.refused_page(refusal)


def _audit_failure(email: str | None, user: AdminUser | None, reason: str) -> None:
    publishing.record_audit(
        ANONYMOUS,
        "login_failed",
        "admin_user",
        user.id if user else None,
        after={"email": email, "reason": reason},
    )
    db.session.commit()


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> Response | str:
    """POST logs out (CSRF-checked); GET asks first, so a link cannot log you out."""
    if request.method == "POST":
        if current_user.is_authenticated:
            log.info("admin logout: user %s from %s", current_user.id, request.remote_addr)
        sessions.end()
        logout_user()
        flash("You are logged out.", "info")
        return redirect(url_for("auth.login"))
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login"))
    return render_template("auth/logout.html")
