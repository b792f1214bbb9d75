"""Admin users and their roles."""

from __future__ import annotations

from flask_login import UserMixin
from werkzeug.security import check_password_hash, generate_password_hash

from ccadmin.extensions import db
from ccadmin.models.types import BigId, utcnow

ROLE_ADMIN = "admin"
ROLE_EDITOR = "editor"
ROLE_VIEWER = "viewer"
ROLES = (ROLE_ADMIN, ROLE_EDITOR, ROLE_VIEWER)
# What each role may do; a role includes everything below it.
ROLE_RANK = {ROLE_VIEWER: 0, ROLE_EDITOR: 1, ROLE_ADMIN: 2}


class AdminUser(UserMixin, db.Model):
    """Someone who logs in to the admin."""

    __tablename__ = "admin_user"

    id = db.Column(BigId, primary_key=True)
    email = db.Column(db.String(254), nullable=False, unique=True)
    password_hash = db.Column(db.String(256), nullable=False)
    role = db.Column(db.String(16), nullable=False, default=ROLE_VIEWER)
    active = db.Column(db.Boolean, nullable=False, default=True)
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, default=utcnow)
    last_login_at = db.Column(db.DateTime(timezone=True), nullable=True)
    # Who the user is at the identity provider, once they signed in through it
    # (ccadmin/security/single_sign_on.py); the email may change there, these do not.
    sso_issuer = db.Column(db.String(255), nullable=True)
    sso_subject = db.Column(db.String(255), nullable=True)

    __table_args__ = (db.UniqueConstraint("sso_issuer", "sso_subject", name="uq_admin_user_sso"),)

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return bool(self.active)

    @property
    def has_password(self) -> bool:
        """False for a user created by single sign-on, who has no password to log in with."""
        return bool(self.password_hash)

    def set_password(self, password: str) -> None:
        """Hash with werkzeug's default (scrypt)."""
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def has_role(self, role: str) -> bool:
        """True if this user's role is `role` or above it."""
        return ROLE_RANK.get(self.role, -1) >= ROLE_RANK[role]

    def __str__(self) -> str:
        return self.email
