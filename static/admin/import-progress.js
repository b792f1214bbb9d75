// The import page's progress bar: polls the status endpoint while the worker
// stages the uploaded file or applies it, and reloads the page once that step
// has finished, to show the preview or the result.
(function () {
  var box = document.getElementById("import-progress");
  if (!box || box.getAttribute("data-running") !== "true") {
    return;
  }
  var bar = document.getElementById("import-progress-bar");
  var text = document.getElementById("import-progress-text");
  var status = document.getElementById("import-status");
  var url = box.getAttribute("data-status-url");
  var staging = box.getAttribute("data-phase") === "staging";
  var stopped = ["failed", "rolled_back", "ready", "invalid"];

  function megabytes(bytes) {
    return (bytes / 1048576).toFixed(1);
  }

  function show(state) {
    bar.style.width = state.percent + "%";
    bar.setAttribute("aria-valuenow", state.percent);
    bar.textContent = state.percent + "%";
    status.textContent = state.status.replace(/_/g, " ");
    if (staging) {
      text.textContent = state.staged_rows + " rows staged; " + megabytes(state.staged_bytes) +
        " of " + megabytes(state.received_bytes) + " MB read.";
    } else {
      text.textContent = state.written + " entries written; " + state.published_batches +
        " of " + state.batches + " batches live.";
    }
  }

  function finished(state) {
    if (staging) {
      return !state.staging;
    }
    return state.live || stopped.indexOf(state.status) >= 0;
  }

  function poll() {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.json(); })
      .then(function (state) {
        show(state);
        if (finished(state)) {
          window.setTimeout(function () { window.location.reload(); }, staging ? 200 : 1000);
        } else {
          window.setTimeout(poll, staging ? 500 : 1000);
        }
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  poll();
})();
