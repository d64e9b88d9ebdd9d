/* The hall screen's check-in panel: the QR code and the 6-digit code, renewed as the server rotates them
 * (its own clock, not this computer's), and the count of members checked in here. */
(function () {
  "use strict";

  var panel = document.getElementById("checkin-panel");
  if (!panel) return;
  var stage = document.getElementById("stage");
  var qr = document.getElementById("checkin-qr");
  var code = document.getElementById("checkin-code");
  var count = document.getElementById("checkin-count");
  var toggle = document.getElementById("toggle-checkin");
  var endpoint = panel.getAttribute("data-endpoint");
  var COUNT_EVERY = 10; // seconds: the count follows within this
  var timer = null;
  var KEY = "bc-checkin-hidden";

  function show(visible) {
    panel.hidden = !visible;
    stage.setAttribute("data-checkin", visible ? "shown" : "hidden");
    if (toggle) toggle.setAttribute("aria-expanded", visible ? "true" : "false");
    try { window.localStorage.setItem(KEY, visible ? "" : "1"); } catch (e) { /* private mode */ }
  }

  function schedule(seconds) {
    clearTimeout(timer);
    timer = setTimeout(refresh, Math.max(0.5, seconds) * 1000);
  }

  function apply(state) {
    count.textContent = String(state.checked_in);
    if (code.getAttribute("data-code") !== state.code) {
      // Swap the picture once the new one has loaded: no blank QR while it travels.
      var next = new Image();
      next.onload = function () {
        qr.src = next.src;
        code.setAttribute("data-code", state.code);
        code.textContent = state.code.slice(0, 3) + "\u2009" + state.code.slice(3);
        panel.setAttribute("data-url", state.url);
      };
      next.onerror = next.onload;
      next.src = state.qr_svg;
    }
    // Renew just after the rotation, and meanwhile refresh the count.
    schedule(Math.min(state.seconds_left + 0.3, COUNT_EVERY));
  }

  function refresh() {
    fetch(endpoint, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 409 || response.status === 403) {
          // The session ended (or this hall is no longer invited): nothing to check in to.
          show(false);
          if (toggle) toggle.hidden = true;
          return null;
        }
        if (!response.ok) throw new Error(String(response.status));
        return response.json();
      })
      .then(function (state) { if (state) apply(state); })
      .catch(function () { schedule(5); });
  }

  if (toggle) toggle.addEventListener("click", function () { show(panel.hidden); });
  var hidden = false;
  try { hidden = window.localStorage.getItem(KEY) === "1"; } catch (e) { /* private mode */ }
  show(!hidden);
  schedule(Math.min(Number(panel.getAttribute("data-seconds-left")) + 0.3, COUNT_EVERY));
})();
