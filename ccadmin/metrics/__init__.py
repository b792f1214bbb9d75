"""The read side of the live metrics: Redis buckets -> series -> plotly figures.

The API processes write the buckets (ccadmin/api/metrics_flush.py) and the
worker adds publish lag (`lag.py`). `histogram.py` turns bucket counts into
percentiles, `series.py` reads a time range into series and totals,
`system.py` reads publishing, Redis and process state, `health.py` rates the
caller's view of the endpoint, and `figures.py` draws them: the only module
in ccadmin that imports plotly.
"""
