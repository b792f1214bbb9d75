"""Four-eyes approval: content changes that wait as change requests until someone else
approves them (campaigns with `changes_need_approval`).

workflow.py opens, refreshes and decides requests, and drift.py tells what
moved since a request was made; the admin's forms and the ingest API call
workflow instead of writing when the campaign (and, for the API, the token)
needs approval. An approval goes through the same write as a
direct change: entry versions, the outbox and the audit log.
"""
