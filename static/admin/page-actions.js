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
})();
