/* Select all / none and a text filter for long checkbox lists (progressive enhancement). */
(function () {
  "use strict";
  document.querySelectorAll("[data-checkall]").forEach(function (tools) {
    var name = tools.getAttribute("data-checkall");
    var form = tools.closest("form") || document;
    var boxes = Array.prototype.slice.call(form.querySelectorAll('input[type="checkbox"][name="' + name + '"]'));
    var counter = tools.querySelector(".checkall-count");
    var filter = tools.querySelector(".checkall-filter");
    function item(box) { return box.closest("li") || box.parentNode; }
    function fold(text) {
      return text.toLowerCase().normalize("NFD").replace(/[\u0300-\u036f]/g, "").replace(/\u0111/g, "d");
    }
    function visible(box) { return !item(box).hidden; }
    function count() {
      if (!counter) return;
      var n = boxes.filter(function (b) { return b.checked; }).length;
      counter.textContent = (counter.getAttribute("data-count-template") || "{count}").replace("{count}", String(n));
    }
    tools.querySelectorAll("[data-check]").forEach(function (button) {
      button.addEventListener("click", function () {
        var on = button.getAttribute("data-check") === "all";
        boxes.forEach(function (b) { if (visible(b)) b.checked = on; });
        count();
      });
    });
    if (filter) {
      filter.addEventListener("input", function () {
        var q = fold(filter.value.trim());
        boxes.forEach(function (b) {
          item(b).hidden = q !== "" && fold(item(b).textContent).indexOf(q) === -1;
        });
      });
    }
    boxes.forEach(function (b) { b.addEventListener("change", count); });
    count();
    tools.hidden = false;
  });
})();
