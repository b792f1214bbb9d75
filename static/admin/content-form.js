// The entry form's inputs follow the campaign's schema. Choosing another
// campaign posts the form back with a marker: the server shows it again with
// that campaign's inputs, keeping the user id and the values of fields both
// campaigns have. Nothing is saved by this post.
(function () {
  var select = document.getElementById("campaign_id");
  if (!select || !select.form) {
    return;
  }
  select.addEventListener("change", function () {
    var form = select.form;
    var marker = document.createElement("input");
    marker.type = "hidden";
    marker.name = "switch_campaign";
    marker.value = "1";
    form.appendChild(marker);
    form.submit();
  });
})();
