"""The dashboard's plotly figures, built from series.read_range() and system state.

The only module in ccadmin that imports plotly. Figures are returned as the
JSON-ready dicts plotly.js takes (`Plotly.react(div, figure.data,
figure.layout)`), so the page redraws in place on every refresh.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from ccadmin.metrics.buckets import CALLER_TIMEOUT, NO_CAMPAIGN
from ccadmin.metrics.health import ERROR_RATE_THRESHOLD, FAILURE_THRESHOLD

STATUS_COLORS = {"2xx": "#2ca02c", "3xx": "#1f77b4", "4xx": "#ff7f0e", "5xx": "#d62728"}
RATIO_COLORS = {"hits": "#2ca02c", "fallbacks": "#bcbd22", "not_found": "#d62728"}
TOP_CAMPAIGNS = 10
_HEIGHT = 300
_MARGIN = {"l": 60, "r": 20, "t": 40, "b": 40}
_ARRAYS = ("x", "y", "customdata")


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title, "font": {"size": 14}},
        "height": _HEIGHT,
        "margin": _MARGIN,
        "legend": {"orientation": "h", "y": -0.15},
        # Keeps zoom and hidden traces across refreshes (Plotly.react).
        "uirevision": "keep",
    }
    layout.update(extra)
    return layout


def _time_axis() -> dict[str, Any]:
    # Bucket times are Unix milliseconds: plotly shows them in UTC.
    return {"type": "date"}


def _figure(data: list[dict[str, Any]], layout: dict[str, Any]) -> dict[str, Any]:
    # Checked by plotly, so a malformed trace fails here and not in the browser,
    # but without the data arrays: validating and copying thousands of points
    # on every refresh would cost more than reading them from Redis.
    arrays = [{name: trace.pop(name) for name in _ARRAYS if name in trace} for trace in data]
    figure = go.Figure({"data": data, "layout": layout}).to_plotly_json()
    for trace, values in zip(figure["data"], arrays, strict=True):
        trace.update(values)
    return figure


def requests_figure(series: dict[str, Any]) -> dict[str, Any]:
    """Requests per second, stacked by status class."""
    data = [
        {
            "type": "scatter",
            "mode": "lines",
            "stackgroup": "status",
            "name": name,
            "x": series["time"],
            "y": series["rate"][name],
            "line": {"color": color, "width": 0},
            "fillcolor": color,
        }
        for name, color in STATUS_COLORS.items()
    ]
    return _figure(
        data,
        _layout("Requests per second by status", xaxis=_time_axis(), yaxis={"rangemode": "tozero"}),
    )


def latency_figure(series: dict[str, Any]) -> dict[str, Any]:
    """p50/p95/p99 latency against the caller's 2 s timeout."""
    cutoff_ms = CALLER_TIMEOUT * 1000
    data = [
        {
            "type": "scatter",
            "name": name,
            "x": series["time"],
            "y": series["latency_ms"][name],
            # Markers: a lone busy second between quiet ones is still seen.
            "mode": "lines+markers",
            "marker": {"size": 4},
        }
        for name in ("p50", "p95", "p99")
    ]
    data.append(
        {
            "type": "scatter",
            "mode": "lines",
            "name": "caller timeout (2 s)",
            "x": [series["time"][0], series["time"][-1]] if series["time"] else [],
            "y": [cutoff_ms, cutoff_ms] if series["time"] else [],
            "line": {"color": "#d62728", "dash": "dash"},
        }
    )
    slow = series["totals"]["slow"]
    return _figure(
        data,
        _layout(
            f"Latency inside the API (ms): {slow} answers slower than 2 s",
            xaxis=_time_axis(),
            yaxis={"type": "log", "title": {"text": "ms"}},
        ),
    )


def meter_figure(series: dict[str, Any]) -> dict[str, Any]:
    """Failures per rolling minute and the error rate, with the caller's thresholds."""
    times = series["time"]
    edges = [times[0], times[-1]] if times else []
    data = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": "failures per minute",
            "x": times,
            "y": series["failures_per_minute"],
            "line": {"color": "#d62728"},
        },
        {
            "type": "scatter",
            "mode": "lines",
            "name": f"{FAILURE_THRESHOLD:,} failures",
            "x": edges,
            "y": [FAILURE_THRESHOLD] * len(edges),
            "line": {"color": "#d62728", "dash": "dot"},
        },
        {
            "type": "scatter",
            "mode": "lines",
            "name": "error rate",
            "x": times,
            "y": series["error_rate"],
            "yaxis": "y2",
            "line": {"color": "#9467bd"},
        },
        {
            "type": "scatter",
            "mode": "lines",
            "name": f"{ERROR_RATE_THRESHOLD:.0%} errors",
            "x": edges,
            "y": [ERROR_RATE_THRESHOLD] * len(edges),
            "yaxis": "y2",
            "line": {"color": "#9467bd", "dash": "dot"},
        },
    ]
    return _figure(
        data,
        _layout(
            "Caller's unhealthy-host meter (per rolling minute)",
            xaxis=_time_axis(),
            yaxis={"title": {"text": "failures"}, "rangemode": "tozero"},
            yaxis2={
                "title": {"text": "error rate"},
                "overlaying": "y",
                "side": "right",
                "range": [0, 1.05],
                "dtick": 0.25,
                "tickformat": ".0%",
                "showgrid": False,
            },
        ),
    )


def _request_bars(title: str, labels: list[str], counts: list[int], color: str) -> dict:
    """One horizontal bar of requests per label, top to bottom as given."""
    data = [
        {
            "type": "bar",
            "orientation": "h",
            "name": "requests",
            "x": counts[::-1],
            "y": labels[::-1],
            "marker": {"color": color},
        }
    ]
    return _figure(data, _layout(title, showlegend=False))


def _known_campaigns(series: dict[str, Any]) -> list[dict[str, Any]]:
    return [row for row in series["campaigns"] if row["campaign"] != NO_CAMPAIGN]


def unknown_campaign_words(series: dict[str, Any]) -> str:
    """The requests that named no known campaign, in words ("" for none)."""
    unknown = sum(row["requests"] for row in series["campaigns"] if row["campaign"] == NO_CAMPAIGN)
    total = sum(row["requests"] for row in series["campaigns"])
    if not unknown:
        return ""
    return f"{unknown:,} requests ({unknown / total:.1%}) named no known campaign"


def top_campaigns_figure(series: dict[str, Any]) -> dict[str, Any]:
    """The busiest campaigns of the range; requests for no known campaign in the title."""
    rows = _known_campaigns(series)[:TOP_CAMPAIGNS]
    unknown = unknown_campaign_words(series)
    return _request_bars(
        "Top campaigns by requests" + (f"<br><sub>{unknown}</sub>" if unknown else ""),
        [row["campaign"] for row in rows],
        [row["requests"] for row in rows],
        "#1f77b4",
    )


def content_ratio_figure(series: dict[str, Any]) -> dict[str, Any]:
    """Per campaign: share of content hits, fallbacks and not-found answers."""
    rows = [row for row in _known_campaigns(series)[:TOP_CAMPAIGNS] if row["requests"]][::-1]
    data = [
        {
            "type": "bar",
            "orientation": "h",
            "name": name.replace("_", " "),
            "x": [row[name] / row["requests"] for row in rows],
            "y": [row["campaign"] for row in rows],
            "customdata": [row[name] for row in rows],
            "hovertemplate": "%{y}: %{customdata} (%{x:.1%})",
            "marker": {"color": color},
        }
        for name, color in RATIO_COLORS.items()
    ]
    return _figure(
        data,
        _layout(
            "Content hit / fallback / not found, per campaign",
            barmode="stack",
            xaxis={"tickformat": ".0%", "range": [0, 1]},
        ),
    )


def lag_figure(series: dict[str, Any]) -> dict[str, Any]:
    """Publish lag: a save to the change being live, p50 and p95."""
    data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": name,
            "x": series["time"],
            "y": series["lag_seconds"][name],
            "marker": {"size": 4},
        }
        for name in ("p50", "p95")
    ]
    return _figure(
        data,
        _layout(
            "Publish lag, save to live (s)",
            xaxis=_time_axis(),
            yaxis={"type": "log", "title": {"text": "s"}},
        ),
    )


def processes_figure(processes: list[dict[str, Any]]) -> dict[str, Any]:
    """Requests per API process over the last minute (alive ones)."""
    alive = [row for row in processes if row["alive"]]
    return _request_bars(
        "Requests per API process, last minute",
        [row["process"] for row in alive],
        [row["requests_last_minute"] for row in alive],
        "#17becf",
    )


def redis_memory_figure(redis_state: dict[str, Any]) -> dict[str, Any]:
    """Redis memory used against maxmemory (no limit set: the gauge shows usage only)."""
    used_mb = redis_state["used_memory"] / 1_048_576
    max_mb = redis_state["maxmemory"] / 1_048_576
    gauge: dict[str, Any] = {"bar": {"color": "#1f77b4"}}
    if max_mb:
        gauge["axis"] = {"range": [0, max_mb]}
        gauge["steps"] = [{"range": [max_mb * 0.8, max_mb], "color": "#fde0dd"}]
    data = [
        {
            "type": "indicator",
            "mode": "gauge+number",
            "value": round(used_mb, 1),
            "number": {"suffix": " MB"},
            "gauge": gauge,
        }
    ]
    limit = f"{max_mb:,.0f} MB" if max_mb else "no maxmemory"
    return _figure(data, _layout(f"Redis memory used (limit: {limit})"))


def dashboard_figures(
    series: dict[str, Any], processes: list[dict[str, Any]], redis_state: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Every figure on the dashboard, by the id of the element that shows it."""
    return {
        "requests": requests_figure(series),
        "latency": latency_figure(series),
        "meter": meter_figure(series),
        "top-campaigns": top_campaigns_figure(series),
        "content-ratio": content_ratio_figure(series),
        "lag": lag_figure(series),
        "processes": processes_figure(processes),
        "redis-memory": redis_memory_figure(redis_state),
    }
