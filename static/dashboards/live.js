// The live metrics page: fetch the JSON endpoint every few seconds and redraw in place.
// Settings come from data- attributes on #live-metrics (no inline script: see CSP).
(function () {
  "use strict";

  var root = document.getElementById("live-metrics");
  if (!root || typeof Plotly === "undefined") {
    return;
  }
  var dataUrl = root.dataset.url;
  var refreshMs = parseInt(root.dataset.refreshMs, 10) || 1500;
  var canRequeue = root.dataset.canRequeue === "1";
  var requeueUrl = root.dataset.requeueUrl;
  var csrfToken = root.dataset.csrfToken;
  var rangeSelect = document.getElementById("range");
  var campaignSelect = document.getElementById("campaign");
  var updated = document.getElementById("updated");
  var plotConfig = { displayModeBar: false, responsive: true };
  var inFlight = false;
  var METER_BADGES = { green: "badge-success", amber: "badge-warning", red: "badge-danger" };

  function text(id, value) {
    var element = document.getElementById(id);
    if (element) {
      element.textContent = value;
    }
  }

  function number(value) {
    return value === null || value === undefined ? "–" : value.toLocaleString();
  }

  function ms(value) {
    return value === null || value === undefined ? "–" : value.toFixed(1) + " ms";
  }

  function seconds(value) {
    return value === null || value === undefined ? "–" : value.toFixed(2) + " s";
  }

  function cell(row, content) {
    var td = document.createElement("td");
    if (content instanceof Node) {
      td.appendChild(content);
    } else {
      td.textContent = content;
    }
    row.appendChild(td);
  }

  // A table's rows, or one row saying in words that there are none.
  function replaceRows(tableId, rows, emptyText) {
    var body = document.querySelector("#" + tableId + " tbody");
    while (body.firstChild) {
      body.removeChild(body.firstChild);
    }
    if (!rows.length && emptyText) {
      var row = document.createElement("tr");
      var only = document.createElement("td");
      only.colSpan = document.querySelectorAll("#" + tableId + " thead th").length;
      only.className = "text-muted empty-state";
      only.textContent = emptyText;
      row.appendChild(only);
      rows = [row];
    }
    rows.forEach(function (row) {
      body.appendChild(row);
    });
  }

  function requeueForm(jobId) {
    var form = document.createElement("form");
    form.method = "post";
    form.action = requeueUrl.replace("JOB_ID", encodeURIComponent(jobId));
    var token = document.createElement("input");
    token.type = "hidden";
    token.name = "csrf_token";
    token.value = csrfToken;
    var button = document.createElement("button");
    button.type = "submit";
    button.className = "btn btn-sm btn-outline-primary requeue";
    button.textContent = "Requeue";
    form.appendChild(token);
    form.appendChild(button);
    return form;
  }

  function drawFigures(figures) {
    Object.keys(figures).forEach(function (name) {
      var element = document.getElementById("fig-" + name);
      if (element) {
        Plotly.react(element, figures[name].data, figures[name].layout, plotConfig);
      }
    });
  }

  function updateCampaigns(options, selected) {
    var wanted = [""].concat(options);
    var present = Array.prototype.map.call(campaignSelect.options, function (option) {
      return option.value;
    });
    if (wanted.join("\n") === present.join("\n")) {
      return;
    }
    while (campaignSelect.options.length > 1) {
      campaignSelect.remove(1);
    }
    options.forEach(function (slug) {
      campaignSelect.add(new Option(slug, slug, false, slug === selected));
    });
  }

  function render(doc) {
    var totals = doc.series.totals;
    var meter = doc.meter;
    var publishing = doc.publishing;
    drawFigures(doc.figures);
    updateCampaigns(doc.campaign_options, doc.campaign || "");
    text("card-requests", number(totals.requests));
    text(
      "card-latency",
      [totals.latency_ms.p50, totals.latency_ms.p95, totals.latency_ms.p99].map(ms).join(" / ")
    );
    text("card-slow", number(totals.slow));
    var badge = document.getElementById("meter-state");
    badge.className = "badge " + METER_BADGES[meter.state];
    badge.textContent = meter.state;
    text(
      "meter-detail",
      number(meter.failures) + " failures of " + number(meter.requests) + " (" +
        (meter.error_rate * 100).toFixed(1) + "%); the caller stops at > " +
        number(meter.failure_threshold) + " and > " + meter.error_rate_threshold * 100 + "%"
    );
    text("card-lag", seconds(totals.lag_seconds.p50) + " / " + seconds(totals.lag_seconds.p95));
    text("card-backlog", number(publishing.unpublished) + " / " + number(publishing.queue_depth));
    text("outbox-unpublished", number(publishing.unpublished));
    text("outbox-oldest", seconds(publishing.oldest_seconds));
    text("outbox-failing", number(publishing.failing));
    text("outbox-last-error", publishing.last_error || "–");
    text("write-counts", number(publishing.writes) + " / " + number(publishing.stale_writes));
    text("superseded-writes", number(publishing.superseded_writes));
    text("queue-depth", number(publishing.queue_depth));
    text("set-aside-count", number(publishing.set_aside_count));
    replaceRows(
      "set-aside",
      publishing.set_aside.map(function (entry) {
        var row = document.createElement("tr");
        var error = document.createElement("pre");
        error.textContent = entry.error;
        cell(row, String(entry.entry_id));
        cell(row, entry.campaign);
        cell(row, entry.user_id);
        cell(row, String(entry.version));
        cell(row, seconds(entry.failed_seconds) + " ago");
        cell(row, error);
        return row;
      }),
      "Nothing set aside: every saved version could be published."
    );
    text("failed-count", number(publishing.failed_count));
    text(
      "workers",
      publishing.workers.length + " alive" +
        publishing.workers.map(function (w) { return " · " + w.name + " (" + w.state + ")"; }).join("")
    );
    replaceRows(
      "failed-jobs",
      publishing.failed_jobs.map(function (job) {
        var row = document.createElement("tr");
        var error = document.createElement("pre");
        error.textContent = job.error;
        cell(row, job.id);
        cell(row, job.call || "");
        cell(row, seconds(job.ended_seconds) + " ago");
        cell(row, error);
        cell(row, canRequeue ? requeueForm(job.id) : "");
        return row;
      }),
      "No failed jobs."
    );
    text("redis-keys", number(doc.redis.keys));
    text("redis-clients", number(doc.redis.connected_clients));
    text("redis-ready", doc.redis.ready ? "present" : "MISSING: the API answers 503 until a rebuild");
    replaceRows(
      "api-processes",
      doc.processes.map(function (process) {
        var row = document.createElement("tr");
        if (!process.alive) {
          row.className = "text-muted";
        }
        cell(row, process.process);
        cell(row, process.seen_seconds + " s ago");
        cell(row, number(process.requests_last_minute));
        return row;
      })
    );
    text("updated", "Updated " + new Date(doc.generated_at * 1000).toLocaleTimeString());
  }

  function refresh() {
    if (inFlight) {
      return;
    }
    inFlight = true;
    var params = new URLSearchParams({ range: rangeSelect.value });
    if (campaignSelect.value) {
      params.set("campaign", campaignSelect.value);
    }
    fetch(dataUrl + "?" + params.toString(), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (response) {
        return response.json().then(function (doc) {
          if (!response.ok) {
            throw new Error(doc.error || response.statusText);
          }
          return doc;
        });
      })
      .then(render)
      .catch(function (error) {
        text("updated", "Metrics unavailable: " + error.message);
      })
      .finally(function () {
        inFlight = false;
      });
  }

  rangeSelect.addEventListener("change", refresh);
  campaignSelect.addEventListener("change", refresh);
  refresh();
  window.setInterval(refresh, refreshMs);
})();
