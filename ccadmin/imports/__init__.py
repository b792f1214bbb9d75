"""Bulk changes to a campaign's content: import files, export, rollback and revert.

Pure logic plus database work, no Flask views: the admin, the worker and any
later ingest API share it. The flow is parse (parsing.py) -> validate, diff and
stage every row in the database (staging.py) -> apply in bounded transactions
through the outbox (applying.py), each row keeping the entry's state before,
so a change set can be undone as a whole (changesets.py).
"""
