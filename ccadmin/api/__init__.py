"""The read-only Connected Content endpoint: the hot path.

A request is parsed, authenticated against an in-memory config snapshot,
answered with one Redis round trip (or a last-known copy), and counted:
`app.py` (the WSGI callable), `caller_access.py` (keys and addresses),
`store.py` (Redis reads, snapshot, last-known copies) with `clients.py`
(single Redis, replicas, cluster), `breaker.py`, `config_snapshot.py` and
`entry_changes.py` (the cache's announcements), `counters.py` (/metrics),
`server.py` (waitress, forking).

Import rule: this package imports only the standard library, `redis`,
`waitress` and the stdlib-only shared modules `ccadmin.config`,
`ccadmin.keys`, `ccadmin.payload`, `ccadmin.embedded_redis` and
`ccadmin.redis_client` (redis only). Never Flask,
SQLAlchemy, WTForms, plotly, psycopg2 or RQ: tests/test_api_imports.py
checks it in a fresh interpreter.
"""
