"""ccadmin: per-user Connected Content, edited in an admin, served from Redis.

Three processes, one data flow:
- web (`wsgi.py`, Flask + Flask-Admin): marketers edit campaigns and content;
  each change commits with an outbox event in PostgreSQL (the source of truth)
  and one wake-up for the workers after commit (`ccadmin/publishing/`).
- worker (`workers/`): drainer threads claim pending outbox events in
  batches, render each changed entry to its final JSON body and write it to
  Redis with a version compare-and-set; RQ runs rebuilds and imports; a
  sweeper rebuilds Redis when it comes back empty and reconciles it.
- api (`ccadmin.api`, waitress): the read-only Connected Content endpoint. It
  reads Redis only and serves the stored bytes.

Import rules: `ccadmin.api` imports only the standard library, redis,
waitress and the stdlib-only shared modules (`config`, `keys`, `payload`,
`embedded_redis`); `ccadmin` never imports `workers`.
"""
