"""Database models, one module per aggregate."""

from ccadmin.models.api_keys import ApiKey
from ccadmin.models.audit import AuditEvent
from ccadmin.models.campaign import Campaign
from ccadmin.models.change_requests import ChangeRequest, ChangeRequestComment
from ccadmin.models.content import ContentEntry, EntrySourceTime
from ccadmin.models.idempotency import IdempotentRequest
from ccadmin.models.imports import ContentImport, ImportRow
from ccadmin.models.management_tokens import ManagementToken
from ccadmin.models.outbox import OutboxEvent, PublishFailure
from ccadmin.models.schedule import ScheduledChange
from ccadmin.models.users import AdminUser

__all__ = [
    "AdminUser",
    "ApiKey",
    "AuditEvent",
    "Campaign",
    "ChangeRequest",
    "ChangeRequestComment",
    "ContentEntry",
    "ContentImport",
    "EntrySourceTime",
    "IdempotentRequest",
    "ImportRow",
    "ManagementToken",
    "OutboxEvent",
    "PublishFailure",
    "ScheduledChange",
]
