// Live "typed / allowed" counters under inputs that carry data-max-length.
// Nothing is cut: a paste longer than the limit stays whole, the counter turns
// red, and the server refuses it with a message naming the field.
(function () {
  "use strict";

  function length(value) {
    // Characters as the server counts them (code points, line breaks as one).
    return Array.from(value.replace(/\r\n/g, "\n")).length;
  }

  function attach(input) {
    var limit = parseInt(input.getAttribute("data-max-length"), 10);
    if (!(limit > 0)) {
      return;
    }
    var counter = document.createElement("small");
    counter.className = "form-text char-counter";
    counter.setAttribute("aria-live", "polite");
    if (input.id) {
      counter.id = input.id + "-counter";
    }
    input.insertAdjacentElement("afterend", counter);

    function update() {
      var typed = length(input.value);
      var over = typed > limit;
      counter.textContent = typed + " / " + limit + (over ? " (" + (typed - limit) + " too many)" : "");
      counter.classList.toggle("text-danger", over);
      counter.classList.toggle("text-muted", !over);
    }
    input.addEventListener("input", update);
    update();
  }

  document.querySelectorAll("[data-max-length]").forEach(attach);
})();
