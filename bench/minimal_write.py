"""The baseline of the write benchmark: a minimal correct write endpoint, nothing more.

`PUT /content/<user_id>` with a bearer token and `{"fields": {...}}`: checks
the token's hash, upserts the entry (version + 1) and inserts an outbox row in
one transaction, answers the version as JSON. Flask and psycopg2 with a
connection pool, served by waitress with the admin's settings; its own tables
(`bench_entry`, `bench_outbox`) in the benchmark's PostgreSQL database.

    DATABASE_URL=postgresql://... BENCH_TOKEN=secret \
        python -m waitress --threads=8 --listen=127.0.0.1:5055 bench.minimal_write:app
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

from flask import Flask, abort, jsonify, request
from psycopg2.pool import ThreadedConnectionPool

SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_entry (
    id BIGSERIAL PRIMARY KEY,
    user_id VARCHAR(128) NOT NULL UNIQUE,
    fields JSONB NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bench_outbox (
    id BIGSERIAL PRIMARY KEY,
    entry_id BIGINT NOT NULL,
    version INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);
"""
UPSERT = """
INSERT INTO bench_entry (user_id, fields, version) VALUES (%s, %s, 1)
ON CONFLICT (user_id) DO UPDATE SET fields = EXCLUDED.fields,
    version = bench_entry.version + 1
RETURNING id, version
"""

app = Flask(__name__)
pool = ThreadedConnectionPool(1, 16, os.environ["DATABASE_URL"])
token_hash = hashlib.sha256(os.environ["BENCH_TOKEN"].encode()).hexdigest()

with pool.getconn() as connection, connection.cursor() as cursor:
    cursor.execute(SCHEMA)
pool.putconn(connection)


@app.put("/content/<user_id>")
def put_content(user_id: str):
    """Authenticate, upsert with a version bump and write the outbox row, in one transaction."""
    presented = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if not hmac.compare_digest(hashlib.sha256(presented.encode()).hexdigest(), token_hash):
        abort(401)
    fields = request.get_json()["fields"]
    connection = pool.getconn()
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(UPSERT, (user_id, json.dumps(fields)))
            entry_id, version = cursor.fetchone()
            cursor.execute(
                "INSERT INTO bench_outbox (entry_id, version) VALUES (%s, %s)", (entry_id, version)
            )
    finally:
        pool.putconn(connection)
    return jsonify({"user_id": user_id, "version": version})
