/* The library: the MP4 job's progress on each entry, updated as it runs (until it is done or failed). */
(function () {
  "use strict";
  var notes = Array.prototype.slice.call(document.querySelectorAll("[data-mp4-of]"));
  if (!notes.length) return;
  var timer = window.setInterval(function () {
    notes = notes.filter(function (note) { return note.isConnected && !note.hasAttribute("data-final"); });
    if (!notes.length) { window.clearInterval(timer); return; }
    notes.forEach(function (note) {
      fetch("/api/v1/recordings/" + note.getAttribute("data-mp4-of"), { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (answer) {
          if (!answer) return;
          if (answer.mp4_status === "done") {
            note.textContent = note.getAttribute("data-done");
            note.setAttribute("data-final", "done");
          } else if (answer.mp4_status === "failed") {
            note.textContent = note.getAttribute("data-failed");
            note.classList.add("job-failed");
            note.setAttribute("data-final", "failed");
          } else {
            note.textContent = note.getAttribute("data-template").replace("{percent}", Math.round(answer.mp4_progress));
          }
        })
        .catch(function () {});
    });
  }, 3000);
})();
