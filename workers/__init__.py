"""The worker process: publishes outbox events to Redis, sweeps, rebuilds, reconciles.

`python -m workers` runs one RQ worker on the publish queue with a sweeper
thread beside it. Jobs are referenced by dotted path from `ccadmin` (which
never imports this package) and carry outbox event ids, never objects.
"""
