"""The one access-controlled base every admin view derives from.

Every endpoint a view exposes goes through `_handle_view`: not logged in means
the login page (or 401 for a write), logged in without the role means 403
before the view runs. Reads need `read_role`; anything else, including every
POST (create, edit, delete, bulk actions, inline edit), needs `write_role`.
Unknown endpoints count as writes, so a new route is closed until declared.
A refused write is audited ("forbidden"), so probing shows in the audit log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import abort, flash, has_request_context, request
from flask_admin.contrib.sqla import ModelView
from flask_admin.contrib.sqla.tools import get_query_for_ids
from flask_admin.helpers import get_redirect_target
from flask_admin.model import typefmt
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy.exc import DisconnectionError, IntegrityError, OperationalError
from werkzeug.datastructures import ImmutableMultiDict

from ccadmin import publishing
from ccadmin.admin.confirmation import Confirmation, confirmed
from ccadmin.extensions import db, login_manager
from ccadmin.imports.spreadsheet import guarded
from ccadmin.models.users import ROLE_ADMIN, ROLE_VIEWER
from ccadmin.security.identifiers import MAX_PAGE, record_id
from ccadmin.web.forms import UntruncatedForm

log = logging.getLogger(__name__)

READ_ENDPOINTS = frozenset({"index", "index_view", "details_view", "export", "ajax_lookup"})
SAVE_FAILED = "Nothing was saved: an unexpected error occurred. Please try again."
CONFLICT = "Nothing was saved: this conflicts with a record that already exists."
# Enough of a refused request's path to tell what was tried.
AUDITED_PATH_LENGTH = 500


class AdminForm(UntruncatedForm):
    """Flask-WTF form base: its CSRF token is the one the global CSRFProtect checks."""


# Units of a relative time, largest first, in seconds.
_UNITS = (("year", 365 * 86400), ("month", 30 * 86400), ("day", 86400), ("h", 3600), ("min", 60))


def exact_time(value: datetime) -> str:
    """A time to the second, in UTC (what every stored time is)."""
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def format_time(view: Any, value: datetime, name: str) -> str:
    """Detail pages: the exact time."""
    return exact_time(value)


def format_yes_no(view: Any, value: bool, name: str) -> str:
    """Plain words, not icons or True/False."""
    return "yes" if value else "no"


def relative_time(value: datetime, now: datetime | None = None) -> str:
    """How long ago (or until) `value`, in the largest whole unit: "3 min ago"."""
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    ahead, seconds = seconds < 0, abs(seconds)
    if seconds < 60:
        return "just now"
    unit, size = next((unit, size) for unit, size in _UNITS if seconds >= size)
    amount = int(seconds // size)
    plural = "s" if amount > 1 and unit not in ("min", "h") else ""
    span = f"{amount} {unit}{plural}"
    return f"in {span}" if ahead else f"{span} ago"


def format_list_time(view: Any, value: datetime, name: str) -> Markup:
    """Lists: "3 min ago" on one line, the exact time on hover and for screen readers."""
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    return Markup('<time class="text-nowrap" datetime="{}" title="{}">{}</time>').format(
        moment.isoformat(), exact_time(moment), relative_time(moment)
    )


def actor() -> str:
    """Who is acting, for audit rows and `updated_by`."""
    return current_user.email


class AccessControlled:
    """Login for every endpoint; `read_role` to read, `write_role` for anything else."""

    read_role: str = ROLE_VIEWER
    # None: the view is read-only for everyone.
    write_role: str | None = ROLE_ADMIN
    extra_read_endpoints: frozenset[str] = frozenset()

    def is_accessible(self) -> bool:
        """Shown in the menu and readable by this user."""
        return bool(current_user.is_authenticated and current_user.has_role(self.read_role))

    def required_role(self, endpoint: str) -> str | None:
        """The role an endpoint needs for the current request (None: nobody)."""
        readable = READ_ENDPOINTS | self.extra_read_endpoints
        if request.method in ("GET", "HEAD") and endpoint in readable:
            return self.read_role
        return self.write_role

    def user_can_write(self) -> bool:
        """True when the logged-in user holds `write_role` (for showing buttons)."""
        if not has_request_context() or not current_user.is_authenticated:
            return False
        return self.write_role is not None and current_user.has_role(self.write_role)

    def _handle_view(self, name: str, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        role = self.required_role(name)
        if role is None or not current_user.has_role(role):
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                self.audit_forbidden(name)
            abort(403)
        return None

    def audit_forbidden(self, name: str) -> None:
        """Record a refused write: who, which endpoint, which path (never the form)."""
        db.session.rollback()
        publishing.record_audit(
            actor(),
            "forbidden",
            "admin_endpoint",
            f"{self.endpoint}.{name}",
            after={"method": request.method, "path": request.path[:AUDITED_PATH_LENGTH]},
        )
        db.session.commit()


class ProtectedModelView(AccessControlled, ModelView):
    """A SQLAlchemy model view behind the role checks, with no COUNT(*) per page."""

    form_base_class = AdminForm
    # What the view offers at all; the user's role decides the rest.
    allow_create = True
    allow_edit = True
    allow_delete = True
    can_export = False
    can_set_page_size = False
    # Inline list editing is off; ajax/update/ answers 404 (after the role check).
    column_editable_list: Any = ()
    # Bulk actions that run only after a confirmation page showing their count.
    confirmed_actions: frozenset[str] = frozenset({"delete"})
    # What the confirmation page calls the records, in the plural.
    record_noun = "records"
    # Without a total there is no COUNT(*) over a table that can hold millions
    # of rows; the list shows "previous / next" instead of page numbers.
    simple_list_pager = True
    page_size = 50
    column_type_formatters = {
        **typefmt.BASE_FORMATTERS,
        datetime: format_list_time,
        bool: format_yes_no,
    }
    column_type_formatters_detail = {
        **typefmt.DETAIL_FORMATTERS,
        datetime: format_time,
        bool: format_yes_no,
    }

    @property
    def can_create(self) -> bool:  # type: ignore[override]
        return self.allow_create and self.user_can_write()

    @property
    def can_edit(self) -> bool:  # type: ignore[override]
        return self.allow_edit and self.user_can_write()

    @property
    def can_delete(self) -> bool:  # type: ignore[override]
        return self.allow_delete and self.user_can_write()

    def _get_list_extra_args(self) -> Any:
        """A page number past any real list is refused (400), not sent to the database."""
        view_args = super()._get_list_extra_args()
        if view_args.page and view_args.page > MAX_PAGE:
            abort(400, "No such page.")
        return view_args

    def get_export_value(self, model: Any, name: Any) -> Any:
        """Exported text a spreadsheet would run as a formula is guarded (spreadsheet.py)."""
        value = super().get_export_value(model, name)
        return guarded(value) if isinstance(value, str) else value

    def get_one(self, id: Any) -> Any:
        """The record of an `?id=` the database can hold; None (not found) otherwise."""
        if record_id(str(id)) is None:
            return None
        return super().get_one(id)

    def get_empty_list_message(self) -> str:
        """An empty list says why in a sentence: nothing yet, or nothing matching."""
        if request.args.get("search") or any(name.startswith("flt") for name in request.args):
            return f"No {self.record_noun} match this search and these filters."
        return f"No {self.record_noun} yet."

    def is_action_allowed(self, name: str) -> bool:
        """Bulk actions are writes."""
        return self.user_can_write() and super().is_action_allowed(name)

    def get_actions_list(self) -> tuple[list[Any], dict[Any, Any]]:
        """No browser prompt for actions the server confirms with a page of their own."""
        actions, confirmations = super().get_actions_list()
        for name in self.confirmed_actions:
            confirmations.pop(name, None)
        return actions, confirmations

    def handle_action(self, return_view: str | None = None) -> Any:
        """A `confirmed_actions` action first answers with how many records it changes.

        Selected ids the database cannot hold are dropped first: no action
        (Flask-Admin's delete included) queries with them.
        """
        request.form = ImmutableMultiDict(
            [
                (key, value)
                for key, value in request.form.items(multi=True)
                if key != "rowid" or record_id(value) is not None
            ]
        )
        name = request.form.get("action", "")
        if name in self.confirmed_actions and self.is_action_allowed(name):
            ids = request.form.getlist("rowid")
            count = self.action_size(name, ids)
            if count and not confirmed(count):
                text = self._actions_data[name][1]
                confirmation = Confirmation.for_request(
                    title=f"{text} {count} {self.record_noun}?",
                    question=f"{text}: this changes {count} {self.record_noun}.",
                    count=count,
                    back_url=get_redirect_target() or self.get_url(".index_view"),
                    button=f"{text} {count} {self.record_noun}",
                )
                return self.render("admin/confirm.html", confirmation=confirmation)
        return super().handle_action(return_view)

    def action_size(self, name: str, ids: list[str]) -> int:
        """How many of the selected records the bulk action `name` would change."""
        return get_query_for_ids(self.get_query(), self.model, ids).count()

    def commit_or_report(self, apply: Callable[[], Any]) -> bool:
        """Run `apply` and commit; on any error roll back, tell the user, return False."""
        try:
            apply()
            db.session.commit()
        except Exception as error:
            db.session.rollback()
            if not self.handle_view_exception(error):
                raise
            return False
        return True

    def handle_view_exception(self, exc: Exception) -> bool:
        """Flash a plain message; the details (SQL, tracebacks) go to the log only."""
        if isinstance(exc, OperationalError | DisconnectionError):
            # The database is unreachable: the app's 503 page (security/errors.py)
            # says so, where a flash over an empty list would look like lost data.
            db.session.rollback()
            return False
        if isinstance(exc, IntegrityError):
            log.warning("integrity error in %s: %s", self.endpoint, exc)
            flash(CONFLICT, "error")
            return True
        if super().handle_view_exception(exc):
            return True
        log.exception("admin view %s failed", self.endpoint)
        flash(SAVE_FAILED, "error")
        return True
