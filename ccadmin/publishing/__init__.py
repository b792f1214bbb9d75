"""Publishing, the web side: record every change in the outbox, wake the drainers.

A change and its outbox event commit together (`outbox.record_*`); after the
commit one cheap wake-up (`wake.wake_drainers`) tells the workers' drainers
(workers/drain.py) to publish what is pending. The audit trail is written in
the same transaction (`audit`).
"""

from ccadmin.publishing.audit import client_ip, entry_snapshot, record_audit
from ccadmin.publishing.outbox import (
    init_app,
    record_api_keys_change,
    record_campaign_change,
    record_content_batch,
    record_content_change,
)
from ccadmin.publishing.wake import wake_drainers, wake_failure_reason

__all__ = [
    "client_ip",
    "entry_snapshot",
    "init_app",
    "record_api_keys_change",
    "record_audit",
    "record_campaign_change",
    "record_content_batch",
    "record_content_change",
    "wake_drainers",
    "wake_failure_reason",
]
