"""Logging in and out of the admin (Flask-Login sessions, hashed passwords)."""

from __future__ import annotations

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
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers import Response
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from ccadmin.extensions import db, login_manager
from ccadmin.models import AdminUser
from ccadmin.models.types import utcnow

bp = Blueprint("auth", __name__)

LOGIN_FAILED = "Invalid email or password."
# Checked when no user matches, so an unknown email costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not-a-real-password")


class LoginForm(FlaskForm):
    """Email and password; CSRF comes with FlaskForm."""

    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


def init_app(app: Flask) -> None:
    """Register the login pages and tell Flask-Login how to find users."""
    login_manager.login_view = "auth.login"
    login_manager.user_loader(load_user)
    login_manager.unauthorized_handler(unauthorized)
    app.register_blueprint(bp)


def load_user(user_id: str) -> AdminUser | None:
    """Flask-Login's user loader: inactive users are treated as logged out."""
    try:
        user = db.session.get(AdminUser, int(user_id))
    except ValueError:
        return None
    if user is None or not user.active:
        return None
    return user


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


@bp.route("/")
def index() -> Response:
    """The site root is the admin."""
    return redirect(url_for("admin.index"))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str:
    """Show the login form; on success go to `next` if it stays on this site."""
    next_url = safe_next_url(request.args.get("next"))
    if current_user.is_authenticated:
        return redirect(next_url or url_for("admin.index"))
    form = LoginForm()
    if form.validate_on_submit():
        user = find_user(form.email.data)
        password_ok = check_password_hash(
            user.password_hash if user else _DUMMY_HASH, form.password.data
        )
        if user is not None and password_ok and user.active:
            login_user(user)
            user.last_login_at = utcnow()
            db.session.commit()
            return redirect(next_url or url_for("admin.index"))
        flash(LOGIN_FAILED, "danger")
    return render_template("auth/login.html", form=form, next_url=next_url)


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> Response | str:
    """POST logs out (CSRF-checked); GET asks first, so a link cannot log you out."""
    if request.method == "POST":
        logout_user()
        flash("You are logged out.", "info")
        return redirect(url_for("auth.login"))
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login"))
    return render_template("auth/logout.html")
