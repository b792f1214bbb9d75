// The import page's progress bar: polls the status endpoint while the apply
// job runs, and reloads the page once it has finished to show the result.
(function () {
  var box = document.getElementById("import-progress");
  if (!box || box.getAttribute("data-running") !== "true") {
    return;
  }
  var bar = document.getElementById("import-progress-bar");
  var text = document.getElementById("import-progress-text");
  var status = document.getElementById("import-status");
  var url = box.getAttribute("data-status-url");
  var stopped = ["failed", "rolled_back", "ready"];

  function show(state) {
    bar.style.width = state.percent + "%";
    bar.setAttribute("aria-valuenow", state.percent);
    bar.textContent = state.percent + "%";
    status.textContent = state.status;
    text.textContent = state.written + " entries written; " + state.published_batches +
      " of " + state.batches + " batches live.";
  }

  function poll() {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.json(); })
      .then(function (state) {
        show(state);
        if (state.live || stopped.indexOf(state.status) >= 0) {
          window.setTimeout(function () { window.location.reload(); }, 1000);
        } else {
          window.setTimeout(poll, 1000);
        }
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  poll();
})();
