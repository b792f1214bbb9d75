"""Admin users: who may log in and with which role (admins only)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import redis
from flask import flash, g
from flask_admin import expose
from flask_admin.actions import action
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import func, select
from wtforms import BooleanField, EmailField, PasswordField, SelectChoice, SelectField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from ccadmin import publishing
from ccadmin.admin.base import AdminForm, ProtectedModelView, actor, format_list_time
from ccadmin.extensions import db
from ccadmin.models import AdminUser
from ccadmin.models.types import utcnow
from ccadmin.models.users import ROLE_ADMIN, ROLES
from ccadmin.security import login_limits, sessions
from ccadmin.security.identifiers import record_id

PASSWORD_MIN_LENGTH = 12


def user_snapshot(user: AdminUser) -> dict[str, Any]:
    """What the audit log keeps of a user (never the password hash)."""
    return {"email": user.email, "role": user.role, "active": bool(user.active)}


def _normalize_email(value: str | None) -> str | None:
    return value.strip().lower() if isinstance(value, str) else value


class UserForm(AdminForm):
    """Email, role, active flag and a password that is only ever written."""

    email = EmailField(
        "Email", filters=[_normalize_email], validators=[DataRequired(), Length(max=254)]
    )
    role = SelectField(
        "Role",
        choices=[
            SelectChoice("viewer", "viewer: reads campaigns, content and the audit log"),
            SelectChoice("editor", "editor: also creates, edits and deletes content"),
            SelectChoice("admin", "admin: everything, including campaigns, users and API keys"),
        ],
        validators=[DataRequired()],
    )
    active = BooleanField("Active (may log in)", default=True)
    password = PasswordField(
        "Password",
        validators=[DataRequired(), Length(min=PASSWORD_MIN_LENGTH, max=1024)],
        description=f"At least {PASSWORD_MIN_LENGTH} characters.",
    )
    # The user being edited, so its own email does not count as taken.
    user: AdminUser | None = None

    def validate_role(self, field: SelectField) -> None:
        if field.data not in ROLES:
            raise ValidationError("Unknown role.")

    def validate_email(self, field: EmailField) -> None:
        query = select(AdminUser.id).where(func.lower(AdminUser.email) == field.data)
        if self.user is not None:
            query = query.where(AdminUser.id != self.user.id)
        if db.session.scalar(query) is not None:
            raise ValidationError("Another user already has this email.")


class UserEditForm(UserForm):
    """On edit the password is optional: empty keeps the current one."""

    password = PasswordField(
        "New password",
        validators=[Optional(), Length(min=PASSWORD_MIN_LENGTH, max=1024)],
        description=f"Leave empty to keep the current password; at least {PASSWORD_MIN_LENGTH} "
        "characters otherwise.",
    )


def _locks(user: AdminUser) -> dict[str, int]:
    """Seconds left on the login locks of the list being rendered, or of this one user."""
    if "login_locks" in g:
        return g.login_locks
    return login_limits.account_locks([user.email])


def _login_lock(view: Any, context: Any, model: AdminUser, name: str) -> Markup | str:
    seconds = _locks(model).get(model.email)
    if seconds is None:
        return ""
    until = utcnow() + timedelta(seconds=seconds)
    return Markup("locked after failed logins; unlocks {}").format(
        format_list_time(view, until, name)
    )


def _sign_in(view: Any, context: Any, model: AdminUser, name: str) -> str:
    ways = []
    if model.sso_subject:
        ways.append("single sign-on")
    if model.has_password:
        ways.append("password")
    return ", ".join(ways) or "nothing yet"


class UserView(ProtectedModelView):
    """Admins only, not even in the menu for others."""

    read_role = ROLE_ADMIN
    write_role = ROLE_ADMIN
    record_noun = "users"
    confirmed_actions = frozenset({"delete", "unlock"})
    can_view_details = True
    column_list = (
        "email",
        "role",
        "active",
        "sign_in",
        "login_lock",
        "created_at",
        "last_login_at",
    )
    column_details_list = column_list
    column_labels = {"login_lock": "Login", "sign_in": "Signs in with"}
    column_formatters = {"login_lock": _login_lock, "sign_in": _sign_in}
    column_formatters_detail = column_formatters
    column_searchable_list = ("email",)
    column_sortable_list = ("email", "role", "created_at")
    column_default_sort = "email"

    def get_list(self, *args: Any, **kwargs: Any) -> Any:
        count, users = super().get_list(*args, **kwargs)
        # One Redis round trip for the page's locks, used while it renders.
        g.login_locks = login_limits.account_locks([user.email for user in users])
        return count, users

    @expose("/")
    def index_view(self) -> Any:
        try:
            return super().index_view()
        finally:
            g.pop("login_locks", None)

    def locked_users(self, ids: list[str]) -> list[tuple[AdminUser, int]]:
        """The selected users whose login is locked, with the seconds left."""
        chosen = [number for number in map(record_id, ids) if number is not None]
        users = db.session.scalars(select(AdminUser).where(AdminUser.id.in_(chosen))).all()
        locks = login_limits.account_locks([user.email for user in users])
        return [(user, locks[user.email]) for user in users if user.email in locks]

    def action_size(self, name: str, ids: list[str]) -> int:
        if name == "unlock":
            return len(self.locked_users(ids))
        return super().action_size(name, ids)

    @action("unlock", "Unlock login")
    def action_unlock(self, ids: list[str]) -> None:
        """Clear the failed-login lock of the selected users before it ends by itself."""
        try:
            locked = self.locked_users(ids)
            for user, _ in locked:
                login_limits.unlock(user.email)
        except redis.RedisError:
            flash("Redis cannot be reached, so no lock was changed. Try again.", "error")
            return
        if not locked:
            flash("None of the selected users is locked.", "info")
            return

        def apply() -> None:
            for user, seconds in locked:
                publishing.record_audit(
                    actor(),
                    "unlock",
                    "admin_user",
                    user.id,
                    {**user_snapshot(user), "locked_for_seconds": seconds},
                    user_snapshot(user),
                )

        if self.commit_or_report(apply):
            flash(f"Unlocked {len(locked)} user{'s' if len(locked) != 1 else ''}.", "success")

    def get_create_form(self) -> type[UserForm]:
        return UserForm

    def get_edit_form(self) -> type[UserEditForm]:
        return UserEditForm

    def edit_form(self, obj: AdminUser | None = None) -> UserEditForm:
        form = super().edit_form(obj)
        form.user = obj
        return form

    def create_model(self, form: UserForm) -> AdminUser | bool:
        user = AdminUser()

        def apply() -> None:
            self._apply(form, user)
            db.session.add(user)
            db.session.flush()
            publishing.record_audit(
                actor(), "create", "admin_user", user.id, None, user_snapshot(user)
            )

        return user if self.commit_or_report(apply) else False

    def update_model(self, form: UserEditForm, model: AdminUser) -> bool:
        if model.id == current_user.id and (form.role.data != ROLE_ADMIN or not form.active.data):
            flash("You cannot remove your own admin role or deactivate yourself.", "error")
            return False
        before = user_snapshot(model)
        password_changed = False

        def apply() -> None:
            nonlocal password_changed
            password_changed = self._apply(form, model)
            after = {**user_snapshot(model), "password_changed": password_changed}
            publishing.record_audit(actor(), "update", "admin_user", model.id, before, after)

        if not self.commit_or_report(apply):
            return False
        if password_changed or not model.active:
            # Whoever held the old password must not stay logged in with it.
            sessions.end_all(model.id, keep_current=model.id == current_user.id)
        return True

    def delete_model(self, model: AdminUser) -> bool:
        if model.id == current_user.id:
            flash("You cannot delete yourself.", "error")
            return False
        user_id = model.id

        def apply() -> None:
            publishing.record_audit(
                actor(), "delete", "admin_user", model.id, user_snapshot(model), None
            )
            db.session.delete(model)

        if not self.commit_or_report(apply):
            return False
        sessions.end_all(user_id)
        return True

    @staticmethod
    def _apply(form: UserForm, user: AdminUser) -> bool:
        user.email = form.email.data
        user.role = form.role.data
        user.active = form.active.data
        if form.password.data:
            user.set_password(form.password.data)
            return True
        return False
