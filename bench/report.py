"""The benchmark's table, its target summary, and a self-contained HTML report (plotly)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

_COLUMNS = (
    ("scenario", 18, "{}"),
    ("server", 8, "{}"),
    ("connections", 7, "{:,}"),
    ("rate", 9, "{:,.0f}"),
    ("p50_ms", 9, "{:.1f}"),
    ("p99_ms", 9, "{:.1f}"),
    ("errors", 7, "{:,}"),
    ("ratio", 6, "{}"),
)
_TITLES = ("scenario", "server", "conns", "req/s", "p50 ms", "p99 ms", "errors", "ratio")
# The Redis Cluster runs: paired single/cluster at 500 connections, and the
# ladder on the cluster (its ratio: against the single-Redis ladder's API row).
CLUSTER_PAIRED = "cluster/single"
CLUSTER_LADDER = "ladder (cluster)"
_LADDERS = ("ladder", "ladder (granian)", CLUSTER_LADDER)


def print_header() -> None:
    """The table's column titles."""
    print(
        " ".join(title.rjust(width) for title, (_, width, _) in zip(_TITLES, _COLUMNS, strict=True))
    )


def print_row(row: dict[str, Any]) -> None:
    """One measured row, as soon as it is measured."""
    cells = []
    for name, width, form in _COLUMNS:
        value = row.get(name)
        cells.append(("-" if value is None else form.format(value)).rjust(width))
    print(" ".join(cells), flush=True)


def _row(rows: list[dict[str, Any]], scenario: str, server: str, connections: int) -> dict:
    for row in rows:
        if (row["scenario"], row["server"], row["connections"]) == (scenario, server, connections):
            return row
    return {}


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, each as a number and a ratio measured in this run."""
    result: dict[str, Any] = {}
    for connections in (50, 500):
        api = _row(rows, "1 process", "api", connections)
        result[f"target1_ratio_at_{connections}"] = api.get("ratio")
    one = _row(rows, "1 process", "api", 500).get("rate")
    two = _row(rows, "2 processes", "api", 500).get("rate")
    one_ceiling = _row(rows, "1 process", "ceiling", 500).get("rate")
    two_ceiling = _row(rows, "2 processes", "ceiling", 500).get("rate")
    result["target2_scaling"] = round(two / one, 2) if one and two else None
    result["ceiling_scaling"] = round(two_ceiling / one_ceiling, 2) if one_ceiling else None
    ladder = [row for row in rows if row["scenario"] == "ladder" and row["server"] == "api"]
    result["target3_errors"] = {row["connections"]: row["errors"] for row in ladder}
    result["target3_p99_ms"] = {row["connections"]: row["p99_ms"] for row in ladder}
    granian = [r for r in rows if r["scenario"] == "ladder (granian)" and r["server"] == "api"]
    if granian:
        result["target3_granian_errors"] = {row["connections"]: row["errors"] for row in granian}
        result["target3_granian_p99_ms"] = {row["connections"]: row["p99_ms"] for row in granian}
    spike = _row(
        rows, "spike", "api", next((r["connections"] for r in rows if r["scenario"] == "spike"), 0)
    )
    result["target4_errors"] = spike.get("errors")
    result["target4_p99_ms"] = spike.get("p99_ms")
    result["target4_probe_max_after_5s"] = spike.get("probe_max_after_5s")
    result["target4_probe_failures"] = spike.get("probe_failures")
    granian_spike = next((row for row in rows if row["scenario"] == "spike (granian)"), {})
    if granian_spike:
        result["target4_granian_errors"] = granian_spike.get("errors")
        result["target4_granian_p99_ms"] = granian_spike.get("p99_ms")
        result["target4_granian_probe_max_after_5s"] = granian_spike.get("probe_max_after_5s")
    tenfold = [row for row in rows if row["scenario"] == "10x spike"]
    result["case15_errors"] = {row["server"]: row["errors"] for row in tenfold}
    result["case15_p99_ms"] = {row["server"]: row["p99_ms"] for row in tenfold}
    result["metrics_on_off_ratio_at_500"] = _row(rows, "metrics off/on", "metrics on", 500).get(
        "ratio"
    )
    result["target5_rss_mb_at_15000"] = _row(rows, "ladder", "api", 15_000).get("rss_mb")
    paired = _row(rows, CLUSTER_PAIRED, "cluster", 500)
    if paired:
        result["cluster_single_ratio_at_500"] = paired.get("ratio")
        single = _row(rows, CLUSTER_PAIRED, "single", 500).get("rate")
        result["cluster_single_rates_at_500"] = [single, paired.get("rate")]
    on_cluster = [r for r in rows if r["scenario"] == CLUSTER_LADDER and r["server"] == "api"]
    if on_cluster:
        result["cluster_ladder_ratio"] = {row["connections"]: row["ratio"] for row in on_cluster}
        result["cluster_ladder_errors"] = {row["connections"]: row["errors"] for row in on_cluster}
        result["cluster_ladder_p99_ms"] = {row["connections"]: row["p99_ms"] for row in on_cluster}
    return result


def print_summary(result: dict[str, Any]) -> None:
    """The targets, one line each."""
    print("\ntargets:")
    for name, value in result.items():
        print(f"  {name}: {value}")


def write_html(results: dict[str, Any], path: Path) -> Path:
    """Charts of the run in one self-contained file (plotly.js inlined)."""
    rows = results["rows"]
    figure = make_subplots(
        rows=2,
        cols=2,
        subplot_titles=(
            "requests/s: API vs hello-world ceiling (and cluster vs single Redis)",
            "ladder: requests/s by connections",
            "ladder: p99 latency (ms) by connections",
            "spike: fresh-connection probes (s to answer)",
        ),
    )
    compared = [
        row
        for row in rows
        if row["scenario"] not in (*_LADDERS, "spike", "spike (granian)", "10x spike")
    ]
    for server in ("ceiling", "api", "single", "cluster"):
        picked = [row for row in compared if row["server"] == server]
        if not picked:
            continue
        figure.add_trace(
            go.Bar(
                name=server,
                x=[f"{row['scenario']} @{row['connections']}" for row in picked],
                y=[row["rate"] for row in picked],
            ),
            row=1,
            col=1,
        )
    for scenario in _LADDERS:
        for server in ("ceiling", "api"):
            picked = [r for r in rows if r["scenario"] == scenario and r["server"] == server]
            if not picked:
                continue
            connections = [row["connections"] for row in picked]
            name = f"{scenario} {server}"
            figure.add_trace(
                go.Scatter(name=name, x=connections, y=[r["rate"] for r in picked]),
                row=1,
                col=2,
            )
            figure.add_trace(
                go.Scatter(name=f"p99 {name}", x=connections, y=[r["p99_ms"] for r in picked]),
                row=2,
                col=1,
            )
    probes = results.get("spike", {}).get("probes", [])
    figure.add_trace(
        go.Scatter(
            name="probe",
            mode="markers",
            x=[item["at"] for item in probes],
            y=[item["seconds"] for item in probes],
            text=[item["outcome"] for item in probes],
        ),
        row=2,
        col=2,
    )
    figure.add_hline(y=2.0, line_dash="dot", row=2, col=2)
    meta = results["meta"]
    figure.update_layout(
        title=f"ccadmin bench {meta['started_at']}: {meta['users']:,} users, {meta['cores']} cores",
        height=900,
    )
    pio.write_html(figure, str(path), include_plotlyjs=True, full_html=True)
    return path
