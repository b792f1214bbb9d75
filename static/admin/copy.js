// Copy buttons: <button data-copy="element-id"> puts that element's text on the
// clipboard and says so on the button. Where the Clipboard API is refused (a
// page served over plain http to another machine), the text is selected for
// Ctrl+C instead.
(function () {
  "use strict";

  function selectText(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function say(button, words) {
    var label = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", label);
    button.textContent = words;
    window.setTimeout(function () {
      button.textContent = label;
    }, 2000);
  }

  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element && event.target.closest("[data-copy]");
    if (!button) {
      return;
    }
    event.preventDefault();
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) {
      return;
    }
    var text = source.textContent;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () {
          say(button, "Copied");
        },
        function () {
          selectText(source);
          say(button, "Selected: press Ctrl+C");
        }
      );
    } else {
      selectText(source);
      say(button, "Selected: press Ctrl+C");
    }
  });
})();
