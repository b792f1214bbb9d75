"""The read side of the live metrics: Redis buckets -> series -> plotly figures.

`buckets.py` is the buckets' format, shared with their writers: the API
processes (ccadmin/api/metrics_flush.py) and the worker's publish lag
(`lag.py`). `histogram.py` turns bucket counts into
percentiles, `series.py` reads a time range into series and totals,
`system.py` reads publishing, Redis and process state, `health.py` rates the
caller's view of the endpoint, and `figures.py` draws them: the only module
in ccadmin that imports plotly.
"""
