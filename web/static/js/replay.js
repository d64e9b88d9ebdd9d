/* The replay page: speed, chapters, resume, the MP4 job's progress, and replay credit.
 *
 * Every few seconds while playing (and when pausing, ending or leaving) the
 * page reports the ranges the browser actually played (video.played: seeking
 * is not watching) to POST /api/v1/recordings/{id}/progress. The server keeps
 * their union and credits at most 2x the wall time between reports; it starts
 * the member's clock with the empty report sent when the page opens.
 */
(function () {
  "use strict";
  var video = document.getElementById("player");
  var configNode = document.getElementById("replay-config");
  if (!video || !configNode) return;
  var config = JSON.parse(configNode.textContent);
  var strings = config.strings || {};
  var endpoint = "/api/v1/recordings/" + config.recording + "/progress";
  var credit = document.getElementById("credit");
  var sending = false;
  var pending = false;

  function csrf() {
    var match = document.cookie.match(/(?:^|;\s*)bc_csrf=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function hms(seconds) {
    var total = Math.max(0, Math.floor(seconds));
    var h = Math.floor(total / 3600), m = Math.floor(total % 3600 / 60), s = total % 60;
    return h + ":" + (m < 10 ? "0" : "") + m + ":" + (s < 10 ? "0" : "") + s;
  }

  function playedRanges() {
    var ranges = [];
    for (var i = 0; i < video.played.length; i++) {
      var start = video.played.start(i), end = video.played.end(i);
      if (end > start) ranges.push([Math.round(start * 1000) / 1000, Math.round(end * 1000) / 1000]);
    }
    return ranges;
  }

  function body() {
    return JSON.stringify({ ranges: playedRanges(), position: Math.round(video.currentTime * 1000) / 1000 });
  }

  function headers() {
    return { "Content-Type": "application/json", "X-CSRF-Token": csrf() };
  }

  function report() {
    if (sending) { pending = true; return; }
    sending = true;
    fetch(endpoint, { method: "POST", headers: headers(), body: body(), credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (answer) {
        if (answer && credit) {
          credit.textContent = hms(answer.credited_seconds);
          credit.setAttribute("data-seconds", String(Math.floor(answer.credited_seconds)));
        }
      })
      .catch(function () { /* the next report carries the same ranges */ })
      .then(function () {
        sending = false;
        if (pending) { pending = false; report(); }
      });
  }

  // Leaving the page: the last ranges go out even as it unloads.
  function reportOnLeave() {
    if (!video.played.length) return;
    fetch(endpoint, { method: "POST", headers: headers(), body: body(), credentials: "same-origin", keepalive: true })
      .catch(function () {});
  }

  // The clock starts now: the first report that claims media is measured from here.
  fetch(endpoint, { method: "POST", headers: headers(), credentials: "same-origin",
                    body: JSON.stringify({ ranges: [] }) }).catch(function () {});

  var timer = null;
  video.addEventListener("play", function () {
    if (timer === null) timer = window.setInterval(report, config.report_seconds * 1000);
  });
  ["pause", "ended"].forEach(function (name) {
    video.addEventListener(name, function () {
      if (timer !== null) { window.clearInterval(timer); timer = null; }
      report();
    });
  });
  window.addEventListener("pagehide", reportOnLeave);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") reportOnLeave();
  });

  // Speed: at most what replay credit allows (2x).
  var speed = document.getElementById("speed");
  if (speed) {
    speed.addEventListener("change", function () {
      video.playbackRate = Math.min(2, Math.max(0.25, parseFloat(speed.value) || 1));
    });
    video.addEventListener("ratechange", function () {
      if (video.playbackRate > 2) video.playbackRate = 2;
    });
  }

  // Chapters seek (and play).
  document.querySelectorAll(".chapter[data-at]").forEach(function (button) {
    button.addEventListener("click", function () {
      video.currentTime = parseFloat(button.getAttribute("data-at")) || 0;
      var playing = video.play();
      if (playing && playing.catch) playing.catch(function () {});
    });
  });
  function markChapter() {
    var current = null;
    document.querySelectorAll(".chapter[data-at]").forEach(function (button) {
      if (parseFloat(button.getAttribute("data-at")) <= video.currentTime + 0.25) current = button;
      button.removeAttribute("aria-current");
    });
    if (current) current.setAttribute("aria-current", "true");
  }
  video.addEventListener("timeupdate", markChapter);

  // Resume where the member left off (unless that was the very start or the end).
  var note = document.getElementById("resume-note");
  function resume() {
    var duration = isFinite(video.duration) ? video.duration : config.duration;
    if (config.position > 3 && config.position < duration - 3) {
      video.currentTime = config.position;
      if (note) note.hidden = false;
    }
  }
  // The metadata may have arrived before this deferred script ran.
  if (video.readyState >= 1) resume();
  else video.addEventListener("loadedmetadata", resume, { once: true });
  var restart = document.getElementById("restart");
  if (restart) {
    restart.addEventListener("click", function () {
      video.currentTime = 0;
      if (note) note.hidden = true;
    });
  }

  // The MP4 copy's progress, until it is ready.
  var progress = document.getElementById("mp4-progress");
  var bar = document.getElementById("mp4-bar");
  if (progress) {
    var poll = window.setInterval(function () {
      fetch("/api/v1/recordings/" + config.recording, { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (answer) {
          if (!answer) return;
          if (answer.mp4_url) {
            window.clearInterval(poll);
            var link = document.createElement("a");
            link.className = "btn btn-secondary";
            link.href = answer.mp4_url + "?download=1";
            link.setAttribute("download", "");
            link.textContent = strings.mp4_ready || "MP4";
            progress.replaceWith(link);
            if (bar) bar.remove();
          } else if (answer.mp4_status === "failed") {
            window.clearInterval(poll);
            progress.textContent = strings.mp4_failed || "";
            if (bar) bar.remove();
          } else {
            progress.textContent = (strings.mp4_progress || "{percent} %").replace("{percent}", Math.round(answer.mp4_progress));
            if (bar) bar.value = answer.mp4_progress;
          }
        })
        .catch(function () {});
    }, 3000);
  }
})();
