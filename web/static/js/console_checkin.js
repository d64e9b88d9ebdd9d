/* The speaker's roll call: how many members are checked in at each hall, polled from the check-in API
 * (the live protocol is not involved: check-ins are not live-room events). */
(function () {
  "use strict";

  var table = document.querySelector(".rollcall-table[data-checkins]");
  if (!table) return;
  var endpoint = table.getAttribute("data-checkins");
  var EVERY = 5000;

  function apply(body) {
    (body.points || []).forEach(function (p) {
      var row = table.querySelector('tr[data-point-id="' + p.bridge_point_id + '"]');
      var cell = row && row.querySelector(".rc-checked-n");
      if (cell) cell.textContent = String(p.checked_in);
      if (row) row.setAttribute("data-checked-in", String(p.checked_in));
    });
  }

  function poll() {
    fetch(endpoint, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) { if (body) apply(body); })
      .catch(function () { /* the next poll tries again */ })
      .then(function () { setTimeout(poll, EVERY); });
  }

  poll();
})();
