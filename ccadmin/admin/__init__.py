"""The Flask-Admin interface, built per app: every view sits behind admin/base.py."""

from __future__ import annotations

from flask import Flask
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme

from ccadmin.admin import live_metrics
from ccadmin.admin.api_keys import ApiKeyView
from ccadmin.admin.audit import AuditView
from ccadmin.admin.base import format_list_time
from ccadmin.admin.campaign_tools import CampaignToolsView
from ccadmin.admin.campaigns import CampaignView
from ccadmin.admin.change_requests import (
    ChangeRequestView,
    RequestOpened,
    ReviewMenu,
    to_request,
)
from ccadmin.admin.content import ContentView
from ccadmin.admin.home import HomeView
from ccadmin.admin.imports import ImportView
from ccadmin.admin.management_tokens import ManagementTokenView
from ccadmin.admin.users import UserView
from ccadmin.extensions import db
from ccadmin.models import (
    AdminUser,
    ApiKey,
    AuditEvent,
    Campaign,
    ChangeRequest,
    ContentEntry,
    ManagementToken,
)
from ccadmin.security.headers import csp_nonce


def init_app(app: Flask) -> Admin:
    """Create the Admin and its views for this app.

    Built here, never at import time: a module-level Admin keeps views bound to
    the first app and breaks the next create_app() (flask-admin issue 910).
    """
    # One way to show a time across the admin: "3 min ago", exact on hover.
    app.jinja_env.filters["when"] = lambda moment: format_list_time(None, moment, "")
    admin = Admin(
        app,
        name="ccadmin",
        index_view=HomeView(name="Home", url="/admin", template="admin/home.html"),
        theme=Bootstrap4Theme(base_template="admin/ccadmin_base.html", fluid=True),
        # Flask-Admin's few inline scripts carry this request's CSP nonce.
        csp_nonce_generator=csp_nonce,
    )
    admin.add_view(ContentView(ContentEntry, db, name="Content", endpoint="content"))
    add_with_badge(
        admin,
        ChangeRequestView(
            ChangeRequest,
            db,
            name="Change requests",
            endpoint="change_requests",
            url="change-requests",
        ),
    )
    admin.add_view(CampaignView(Campaign, db, name="Campaigns", endpoint="campaigns"))
    admin.add_view(ImportView(name="Imports", endpoint="imports"))
    admin.add_view(
        CampaignToolsView(name="Campaign tools", endpoint="campaign_tools", url="campaign-tools")
    )
    admin.add_view(AuditView(AuditEvent, db, name="Audit log", endpoint="audit"))
    admin.add_view(UserView(AdminUser, db, name="Users", endpoint="users"))
    admin.add_view(ApiKeyView(ApiKey, db, name="API keys", endpoint="api_keys"))
    admin.add_view(
        ManagementTokenView(
            ManagementToken,
            db,
            name="Management tokens",
            endpoint="management_tokens",
            url="management-tokens",
        )
    )
    live_metrics.init_app(app, admin)
    app.register_error_handler(RequestOpened, lambda opened: to_request(opened.change_request))
    return admin


def add_with_badge(admin: Admin, view: ChangeRequestView) -> None:
    """Add the view; its menu item counts the open requests waiting for the user."""
    admin.add_view(view)
    menu = admin.menu()
    position = menu.index(view.menu)
    menu[position] = ReviewMenu(view.name, view)
