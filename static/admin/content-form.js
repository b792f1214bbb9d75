// The entry form's inputs follow the campaign's schema: reload the create
// page for the campaign chosen, keeping the other query arguments.
(function () {
  var select = document.getElementById("campaign_id");
  if (!select) {
    return;
  }
  select.addEventListener("change", function () {
    var url = new URL(window.location.href);
    url.searchParams.set("campaign_id", select.value);
    window.location.assign(url.toString());
  });
})();
