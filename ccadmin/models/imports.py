"""Bulk change sets: an uploaded import, a campaign's revert, the rollback of one, or the
roll forward that undoes a rollback.

Every row keeps the entry's state before the change (`before_*`), so a change
set can be undone as a whole, and an entry's history can show which version
each row wrote (`before_version + 1`).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, LargeBinary, PrimaryKeyConstraint

from ccadmin.extensions import db
from ccadmin.models.types import BigId, JsonDoc, utcnow

KIND_IMPORT = "import"
KIND_ROLLBACK = "rollback"
KIND_REVERT = "revert"
# Re-applies what a rollback undid (the rollback of a rollback).
KIND_ROLL_FORWARD = "roll_forward"
# Change sets that undo another one, row by row, only where nothing changed since.
UNDO_KINDS = (KIND_ROLLBACK, KIND_ROLL_FORWARD)
KIND_LABELS = {
    KIND_IMPORT: "import",
    KIND_ROLLBACK: "rollback",
    KIND_REVERT: "revert",
    KIND_ROLL_FORWARD: "roll forward",
}

# receiving: an API body streaming into import_chunk; received: stored whole,
# waiting for the worker; staging: being read by the worker (the API's path);
# validating: being read in the request (the admin's upload); invalid: the
# file cannot be applied at all (the report says why); ready: previewed;
# scheduled/queued/applying: on its way; applied; failed: stopped midway and
# undone; rolled_back: undone on request.
STATUS_RECEIVING = "receiving"
STATUS_RECEIVED = "received"
STATUS_STAGING = "staging"
STATUS_VALIDATING = "validating"
STATUS_INVALID = "invalid"
STATUS_READY = "ready"
STATUS_SCHEDULED = "scheduled"
STATUS_QUEUED = "queued"
STATUS_APPLYING = "applying"
STATUS_APPLIED = "applied"
STATUS_FAILED = "failed"
STATUS_ROLLED_BACK = "rolled_back"

MODE_ALL = "all_or_nothing"
MODE_VALID_ONLY = "valid_only"

OUTCOME_NEW = "new"
OUTCOME_CHANGED = "changed"
OUTCOME_UNCHANGED = "unchanged"
OUTCOME_DELETED = "deleted"
OUTCOME_INVALID = "invalid"
# A rollback row whose entry was edited after the change it undoes: left alone.
OUTCOME_CONFLICT = "conflict"
WRITING_OUTCOMES = (OUTCOME_NEW, OUTCOME_CHANGED, OUTCOME_DELETED)


class ContentImport(db.Model):
    """One change set for one campaign, with its preview report and apply state."""

    __tablename__ = "content_import"

    id = db.Column(BigId, primary_key=True)
    kind = db.Column(db.String(16), nullable=False, default=KIND_IMPORT)
    campaign_id = db.Column(
        BigId, db.ForeignKey("campaign.id", ondelete="RESTRICT"), nullable=False
    )
    # The change set a rollback (or roll forward) undoes.
    source_import_id = db.Column(BigId, nullable=True)
    filename = db.Column(db.String(255), nullable=True)
    status = db.Column(db.String(16), nullable=False, default=STATUS_READY)
    mode = db.Column(db.String(16), nullable=False, default=MODE_ALL)
    created_by = db.Column(db.String(200), nullable=False)
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, default=utcnow)
    total_rows = db.Column(db.Integer, nullable=False, default=0)
    new_rows = db.Column(db.Integer, nullable=False, default=0)
    changed_rows = db.Column(db.Integer, nullable=False, default=0)
    unchanged_rows = db.Column(db.Integer, nullable=False, default=0)
    deleted_rows = db.Column(db.Integer, nullable=False, default=0)
    invalid_rows = db.Column(db.Integer, nullable=False, default=0)
    # {"file_errors": [...], "invalid": [...], "diffs": [...], "columns": [...]}
    report = db.Column(JsonDoc, nullable=False, default=dict)
    # Outbox events of the applied batches, to tell how much of it is live.
    batch_event_ids = db.Column(JsonDoc, nullable=False, default=list)
    # Rows up to this line are committed; a failed apply undoes exactly these.
    applied_through_line = db.Column(db.Integer, nullable=False, default=0)
    written_rows = db.Column(db.Integer, nullable=False, default=0)
    scheduled_at = db.Column(db.DateTime(timezone=True), nullable=True)
    applied_at = db.Column(db.DateTime(timezone=True), nullable=True)
    applied_by = db.Column(db.String(200), nullable=True)
    finished_at = db.Column(db.DateTime(timezone=True), nullable=True)
    rolled_back_by_id = db.Column(BigId, nullable=True)
    error = db.Column(db.Text, nullable=True)
    # A body staged by the worker from import_chunk: its format (csv/jsonl),
    # bytes stored so far, when it was stored whole, and whether the worker
    # applies it once staged (the API) or leaves it previewed.
    upload_format = db.Column(db.String(8), nullable=True)
    upload_bytes = db.Column(BigInteger, nullable=True)
    received_at = db.Column(db.DateTime(timezone=True), nullable=True)
    apply_when_staged = db.Column(db.Boolean, nullable=True, default=False)
    # Set when a write with a token that needs approval made it: once staged,
    # it waits as a change request (ccadmin/approvals/) made "via" this.
    approval_via = db.Column(db.String(220), nullable=True)

    campaign = db.relationship("Campaign", lazy="joined")

    __table_args__ = (Index("ix_content_import_campaign", "campaign_id", "id"),)

    @property
    def job_id(self) -> str:
        """The RQ job id of this change set's apply job."""
        return f"import-{self.id}"

    @property
    def label(self) -> str:
        """What the pages call this kind of change set ("import", "revert", ...)."""
        return KIND_LABELS.get(self.kind, self.kind)

    @property
    def writes(self) -> int:
        """Entries applying the previewed change set changes (new, changed or deleted)."""
        return self.new_rows + self.changed_rows + self.deleted_rows


class ImportRow(db.Model):
    """One row of a change set: the target state, its outcome, and the state before."""

    __tablename__ = "import_row"

    import_id = db.Column(
        BigId, db.ForeignKey("content_import.id", ondelete="CASCADE"), nullable=False
    )
    # Line of the file where the row starts (a sequence number for generated sets).
    line = db.Column(db.Integer, nullable=False)
    user_id = db.Column(db.String(128), nullable=True)
    # The entry's complete fields after the change (None: deleted, or invalid).
    fields = db.Column(JsonDoc, nullable=True)
    delete = db.Column(db.Boolean, nullable=False, default=False)
    outcome = db.Column(db.String(16), nullable=False)
    reason = db.Column(db.String(500), nullable=True)
    # Only write if the entry still has this version (rollbacks); None: always.
    expect_version = db.Column(db.Integer, nullable=True)
    before_version = db.Column(db.Integer, nullable=True)
    before_fields = db.Column(JsonDoc, nullable=True)
    before_deleted = db.Column(db.Boolean, nullable=True)

    __table_args__ = (
        PrimaryKeyConstraint("import_id", "line", name="pk_import_row"),
        Index("ix_import_row_user", "import_id", "user_id"),
    )

    @property
    def after_version(self) -> int:
        """The version this row writes (or wrote)."""
        return (self.before_version or 0) + 1


class ImportChunk(db.Model):
    """A piece (about 1 MB) of an uploaded body, kept where web and worker both read it.

    Web and worker processes share no disk on a platform; they share the
    database. The chunks are deleted once the body is staged.
    """

    __tablename__ = "import_chunk"

    import_id = db.Column(
        BigId, db.ForeignKey("content_import.id", ondelete="CASCADE"), nullable=False
    )
    # 0, 1, 2...: the body is the chunks in this order.
    seq = db.Column(db.Integer, nullable=False)
    data = db.Column(LargeBinary, nullable=False)

    __table_args__ = (PrimaryKeyConstraint("import_id", "seq", name="pk_import_chunk"),)
