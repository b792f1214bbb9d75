// Behaviour Flask-Admin's templates attach with inline event handlers, attached
// here instead so the Content-Security-Policy can forbid inline script
// (templates/admin/actions.html and templates/admin/model/ carry data- attributes).
(function () {
  "use strict";

  document.addEventListener("click", function (event) {
    if (!(event.target instanceof Element)) {
      return;
    }
    // Bulk actions ("With selected" menu): confirm, then submit the hidden form.
    var action = event.target.closest("[data-model-action]");
    if (action) {
      event.preventDefault();
      if (window.modelActions) {
        window.modelActions.execute(action.getAttribute("data-model-action"));
      }
      return;
    }
    // Row delete buttons: submit only once the user confirms.
    var confirmed = event.target.closest("[data-confirm]");
    if (confirmed && !window.confirm(confirmed.getAttribute("data-confirm"))) {
      event.preventDefault();
      return;
    }
    // "javascript:void(0)" links (tabs, pagers, menu toggles) must not navigate:
    // running a javascript: URL is inline script, which the CSP refuses.
    var link = event.target.closest('a[href^="javascript:"]');
    if (link) {
      event.preventDefault();
    }
    // Capture phase: some of Flask-Admin's menu scripts stop the click from
    // bubbling, and a javascript: link must be stopped before it navigates.
  }, true);

  // The filter rows' value boxes have no label: name them after their filter.
  // Their drop-downs (select2) add text inputs whose only label is an empty one
  // hidden off screen: give those a name screen readers announce.
  function labelFilterInputs() {
    document.querySelectorAll(".filter-val:not([aria-label])").forEach(function (input) {
      var row = input.closest("tr");
      var name = row && row.querySelector(".remove-filter");
      var text = name ? name.textContent.replace("\u00d7", "").trim() : "Filter";
      input.setAttribute("aria-label", text + ": value");
    });
    document.querySelectorAll('input[id^="s2id_autogen"]:not([aria-label])').forEach(
      function (input) {
        input.setAttribute("aria-label", "Filter option");
        var hidden = document.querySelector('label.select2-offscreen[for="' + input.id + '"]');
        if (hidden) {
          hidden.removeAttribute("for");
        }
      }
    );
  }
  new MutationObserver(labelFilterInputs).observe(document.body, {childList: true, subtree: true});
  labelFilterInputs();
})();
