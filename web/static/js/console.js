/* The speaker's console: camera and screen, go live / end, roll call, hands, floor, program, questions. */
(function () {
  "use strict";

  var B = window.Bridgecast;
  if (!B || !B.LiveClient || !B.ui) return;
  var UI = B.ui;
  var config = UI.readJSON("live-config");
  if (!config) return;
  var t = UI.Strings("live-strings");
  var $ = function (id) { return document.getElementById(id); };
  var page = UI.readJSON("live-page") || {};
  var lang = page.locale || document.documentElement.lang || "vi";
  // Times as every other page shows them: in the configured zone, not the browser's.
  var clockTime = UI.timeFormatter(page.timezone, lang, "time");
  var dateTime = UI.timeFormatter(page.timezone, lang, "datetime");

  var client = new B.LiveClient(config);
  var el = {
    status: $("session-status"), clock: $("live-clock"), conn: $("conn-state"),
    goLive: $("go-live"), end: $("end-session"), endDialog: $("end-dialog"),
    startDialog: $("start-dialog"), startNow: $("start-now"),
    alert: $("console-alert"),
    preview: $("local-preview"), sourceLabel: $("source-label"), cameraError: $("camera-error"),
    publishState: $("publish-state"), mic: $("toggle-mic"), screen: $("toggle-screen"),
    program: $("program-preview"), viewState: $("view-state"), programEmpty: $("program-empty"), onAir: $("on-air"),
    sourceNotes: $("source-notes"),
    rollcall: $("rollcall"), summary: $("rollcall-summary"), alarms: $("quality-alarms"),
    floorPanel: $("floor-panel"), floorNone: $("floor-none"), floorCurrent: $("floor-current"),
    floorName: $("floor-name"), floorRemaining: $("floor-remaining"), revoke: $("revoke-floor"),
    floorReconnecting: $("floor-reconnecting"), floorAlerts: $("floor-alerts"),
    queue: $("hand-queue"), queueEmpty: $("queue-empty"), queueCount: $("queue-count"), limit: $("grant-limit"),
    questions: $("questions"), questionsEmpty: $("questions-empty"), questionCount: $("question-count"),
    ended: $("ended-screen"), endedReason: $("ended-reason"),
  };

  var state = {
    status: null, actualStart: null, floor: null, floorAt: 0, points: {}, rollcallAt: 0,
    camera: null, cameraTrack: null, screenTrack: null, publish: null, view: null, micOn: true,
    questions: {}, questionTotal: 0, you: null,
    // The quality board: each point's last figures and its sparkline's samples.
    quality: {}, samples: {}, order: [],
  };
  var Q = B.quality;
  var alarms = Q ? new Q.Alarms(el.alarms, t) : null;

  // Status and buttons ---------------------------------------------------------------------------

  function setStatus(session) {
    if (!session) return;
    state.status = session.status;
    // Counted from the server's figure with this page's monotonic clock: a computer whose clock
    // is off by minutes still shows how long the session has been live.
    state.actualStart = typeof session.live_seconds === "number"
      ? performance.now() - session.live_seconds * 1000 : null;
    el.status.className = "badge badge-" + session.status;
    var text = el.status.querySelector(".badge-text");
    text.textContent = t("status_" + session.status);
    var dot = el.status.querySelector(".live-dot");
    if (session.status === "live" && !dot) {
      dot = document.createElement("span");
      dot.className = "live-dot";
      dot.setAttribute("aria-hidden", "true");
      el.status.insertBefore(dot, text);
    } else if (session.status !== "live" && dot) {
      dot.remove();
    }
    el.goLive.hidden = session.status !== "scheduled";
    el.goLive.disabled = false;
    el.end.hidden = session.status !== "live";
    document.body.setAttribute("data-status", session.status);
    if (state.publishPc) setPublishState(state.publishPc);
    if (state.floor) showOnAir(state.floor);
    tickClock();
    if (session.status === "ended" || session.status === "cancelled") showEnded("");
  }

  function tickClock() {
    if (state.status === "live" && state.actualStart) {
      el.clock.hidden = false;
      el.clock.textContent = t("live_for", { time: UI.formatDuration((performance.now() - state.actualStart) / 1000) });
    } else {
      el.clock.hidden = true;
    }
  }

  function showEnded(reason) {
    el.endedReason.textContent = reason || "";
    el.ended.hidden = false;
    stopMedia();
  }

  // A point's connection in the roll call: "reconnecting" is a hall whose socket dropped
  // less than the server's grace period ago (it keeps its floor and hand meanwhile).
  function isConnected(state) { return state !== "not_connected" && state !== "reconnecting"; }

  /** An alert that stays until the speaker closes it: a floor that ended without their doing. */
  function floorAlert(text) {
    var item = $("floor-alert").content.firstElementChild.cloneNode(true);
    item.querySelector(".floor-alert-text").textContent = text;
    item.querySelector(".floor-alert-close").addEventListener("click", function () { item.remove(); });
    el.floorAlerts.appendChild(item);
    while (el.floorAlerts.children.length > 4) el.floorAlerts.firstElementChild.remove();
  }

  function showAlert(text) {
    el.alert.textContent = text;
    el.alert.hidden = false;
    clearTimeout(showAlert.timer);
    showAlert.timer = setTimeout(function () { el.alert.hidden = true; }, 7000);
  }

  client.on("status", function (s) {
    el.conn.setAttribute("data-state", s.state);
    el.conn.textContent = t("conn_" + (s.state === "online" ? "online" : s.state));
    document.body.setAttribute("data-connection", s.state);
    if (s.state === "closed" && s.reason === "removed") showEnded(t("ended_removed"));
  });
  client.on("welcome", function (w) { state.you = w.you; });
  client.on("session", setStatus);
  client.on("error", function (e) {
    if (e.code === "studio_feed") {
      // OBS (WHIP) is the camera: the console's is offered again now and then, and used when it stops.
      state.studio = false;
      setPublishState("studio");
      state.studio = true;
      el.publishState.textContent = t("pc_studio");
      el.publishState.title = t("pc_studio_long");
      return;
    }
    var key = "err_" + e.code;
    showAlert(t.table[key] ? t(key) : t("error", { message: e.message || e.code }));
    if (e.request === "start") el.goLive.disabled = false;
  });

  function start() {
    if (client.send("start")) el.goLive.disabled = true;
  }

  /** "early" more than page.earlyStartMinutes before the scheduled start, "late" after its end, else "". */
  function offSchedule(now) {
    var begins = Date.parse(page.scheduledStart), ends = Date.parse(page.scheduledEnd);
    var margin = (typeof page.earlyStartMinutes === "number" ? page.earlyStartMinutes : 30) * 60000;
    if (!isNaN(begins) && now < begins - margin) return "early";
    if (!isNaN(ends) && now > ends) return "late";
    return "";
  }

  el.goLive.addEventListener("click", function () {
    var now = Date.now();
    var when = offSchedule(now);
    if (!when || !el.startDialog || !el.startDialog.showModal) { start(); return; }
    el.startDialog.setAttribute("data-when", when);
    el.startDialog.querySelectorAll("[data-when]").forEach(function (node) {
      node.hidden = node.getAttribute("data-when") !== when;
    });
    el.startNow.setAttribute("datetime", new Date(now).toISOString());
    el.startNow.textContent = dateTime(now);
    el.startDialog.returnValue = "";
    el.startDialog.showModal();
  });
  if (el.startDialog) {
    el.startDialog.addEventListener("close", function () {
      if (el.startDialog.returnValue === "start") start();
    });
  }
  el.end.addEventListener("click", function () {
    if (el.endDialog.showModal) el.endDialog.showModal();
  });
  el.endDialog.addEventListener("close", function () {
    if (el.endDialog.returnValue === "end") client.send("end");
  });

  // Camera, microphone, screen -------------------------------------------------------------------

  function setPublishState(s) {
    // While OBS (WHIP) is the camera, the console's offers are refused and retried: keep saying so.
    if (s === "connected" || s === "closed") state.studio = false;
    if (state.studio && s !== "studio") return;
    el.publishState.title = "";
    state.publishPc = s;
    el.publishState.setAttribute("data-state", s);
    var key = s === "connected" && state.status !== "live" ? "pc_ready" : "pc_" + s;
    el.publishState.textContent = t.table[key] ? t(key) : s;
  }

  function setViewState(s) {
    el.viewState.setAttribute("data-state", s);
    el.viewState.textContent = s === "connected" ? t("view_connected") : t.table["pc_" + s] ? t("pc_" + s) : s;
  }

  function startCamera() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      cameraFailed({ message: "getUserMedia" });
      return;
    }
    navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    }).then(function (stream) {
      state.camera = stream;
      state.cameraTrack = stream.getVideoTracks()[0] || null;
      el.preview.srcObject = stream;
      el.cameraError.hidden = true;
      publish();
    }, cameraFailed);
  }

  function cameraFailed(error) {
    el.cameraError.textContent = t("camera_error", { message: (error && (error.message || error.name)) || "" });
    el.cameraError.hidden = false;
    setPublishState("closed");
  }

  function publish() {
    if (!state.camera) return;
    var tracks = state.camera.getAudioTracks().slice();
    var video = state.screenTrack || state.cameraTrack;
    if (video) tracks.unshift(video);
    state.publish = client.openPublish(new MediaStream(tracks), { onState: setPublishState });
  }

  el.mic.addEventListener("click", function () {
    if (!state.camera) return;
    state.micOn = !state.micOn;
    state.camera.getAudioTracks().forEach(function (track) { track.enabled = state.micOn; });
    el.mic.setAttribute("aria-pressed", state.micOn ? "false" : "true");
    el.mic.textContent = state.micOn ? t("mic_off") : t("mic_on");
  });

  function useVideo(track, label) {
    el.preview.srcObject = new MediaStream([track].concat(state.camera ? state.camera.getAudioTracks() : []));
    el.preview.classList.toggle("is-screen", track === state.screenTrack);
    el.sourceLabel.textContent = label;
    if (state.publish) state.publish.replaceVideo(track).catch(function (e) { console.error(e); });
  }

  function stopScreen() {
    if (!state.screenTrack) return;
    var track = state.screenTrack;
    state.screenTrack = null;
    track.onended = null;
    track.stop();
    if (state.cameraTrack) useVideo(state.cameraTrack, el.sourceLabel.getAttribute("data-camera"));
    el.screen.setAttribute("aria-pressed", "false");
    el.screen.textContent = t("screen_on");
  }

  el.sourceLabel.setAttribute("data-camera", el.sourceLabel.textContent);
  el.screen.addEventListener("click", function () {
    if (state.screenTrack) { stopScreen(); return; }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) { showAlert(t("screen_error")); return; }
    navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false }).then(function (stream) {
      var track = stream.getVideoTracks()[0];
      if (!track) return;
      if ("contentHint" in track) track.contentHint = "detail";
      state.screenTrack = track;
      track.onended = stopScreen;
      useVideo(track, t("screen_on"));
      el.screen.setAttribute("aria-pressed", "true");
      el.screen.textContent = t("screen_off");
    }, function () { showAlert(t("screen_error")); });
  });

  function stopMedia() {
    client.close();
    if (state.screenTrack) state.screenTrack.stop();
    if (state.camera) state.camera.getTracks().forEach(function (track) { track.stop(); });
  }

  // Program preview ------------------------------------------------------------------------------

  state.view = client.openView({ video: el.program, onState: setViewState });
  el.program.muted = true;
  function programShown() { el.programEmpty.hidden = el.program.videoWidth > 0; }
  el.program.addEventListener("resize", programShown);
  el.program.addEventListener("playing", programShown);
  el.program.addEventListener("emptied", programShown);

  document.querySelectorAll("[data-source]").forEach(function (button) {
    button.addEventListener("click", function () { client.send("show", { source: button.getAttribute("data-source") }); });
  });

  // Floor and hand queue -----------------------------------------------------------------------

  function pointName(id) {
    var row = rowOf(id);
    return row ? row.querySelector(".rc-point").textContent : "";
  }

  function onAirText(key) {
    if (!key) return t("on_air_none");
    var match = /^point:(\d+)$/.exec(key);
    if (match) return t("on_air_point", { name: pointName(Number(match[1])) || key });
    return t("on_air_speaker");
  }

  function showOnAir(floor) {
    var key = state.status === "live" ? floor.on_air : null;
    el.onAir.textContent = onAirText(key);
    el.onAir.setAttribute("data-on-air", key || "");
  }

  // What each publisher sends: one that keyframes only on its own schedule (OBS) makes switches wait.
  client.on("sources", function (message) {
    var notes = message.sources.filter(function (s) { return s.ignores_keyframe_requests && s.keyframe_interval; })
      .map(function (s) {
        var match = /^point:(\d+)$/.exec(s.key);
        return t("source_slow_keyframes", {
          who: match ? (pointName(Number(match[1])) || s.key) : t("source_speaker"),
          codec: s.codec === "h264" ? "H.264" : "VP8",
          size: s.width ? s.width + "×" + s.height : "",
          interval: String(Math.round(s.keyframe_interval * 10) / 10),
        });
      });
    el.sourceNotes.textContent = notes.join(" ");
    el.sourceNotes.hidden = notes.length === 0;
    el.sourceNotes.setAttribute("data-notes", String(notes.length));
  });

  client.on("floor", function (floor) {
    state.floor = floor;
    state.floorAt = Date.now();
    var holder = floor.holder;
    el.floorPanel.setAttribute("data-holder", holder ? String(holder.point_id) : "");
    el.floorPanel.setAttribute("data-reconnecting", holder && holder.reconnecting ? "true" : "false");
    el.floorNone.hidden = !!holder;
    el.floorCurrent.hidden = !holder;
    el.floorReconnecting.hidden = !(holder && holder.reconnecting);
    if (holder) el.floorName.textContent = holder.name || pointName(holder.point_id);
    tickFloor();

    showOnAir(floor);
    document.querySelectorAll("[data-source]").forEach(function (button) {
      button.setAttribute("aria-pressed", button.getAttribute("data-source") === floor.program ? "true" : "false");
    });

    var queue = floor.queue || [];
    var template = $("queue-item");
    el.queue.textContent = "";
    queue.forEach(function (entry, index) {
      var item = template.content.firstElementChild.cloneNode(true);
      item.setAttribute("data-point-id", String(entry.point_id));
      item.querySelector(".queue-pos").textContent = String(index + 1);
      item.querySelector(".queue-name").textContent = entry.name || pointName(entry.point_id);
      item.querySelector("[data-grant]").setAttribute("data-grant", String(entry.point_id));
      item.querySelector("[data-dismiss]").setAttribute("data-dismiss", String(entry.point_id));
      el.queue.appendChild(item);
    });
    el.queueEmpty.hidden = queue.length > 0;
    el.queueCount.textContent = String(queue.length);
    updateGrantButtons();
  });

  function tickFloor() {
    var holder = state.floor && state.floor.holder;
    if (!holder) return;
    if (typeof holder.remaining === "number") {
      var left = holder.remaining - (Date.now() - state.floorAt) / 1000;
      el.floorRemaining.textContent = t("remaining", { time: UI.formatDuration(Math.max(0, left)) });
      el.floorRemaining.classList.toggle("is-short", left < 30);
    } else {
      var point = state.points[holder.point_id];
      var talked = point ? point.talk_seconds + (Date.now() - state.rollcallAt) / 1000 : 0;
      el.floorRemaining.textContent = t("no_limit") + " · " + t("speaking_for", { time: UI.formatDuration(talked) });
      el.floorRemaining.classList.remove("is-short");
    }
  }

  el.revoke.addEventListener("click", function () { client.send("revoke_floor"); });

  // A grant ended: say so when it was not the speaker's doing (revoked, removed).
  client.on("floor_ended", function (message) {
    var key = "floor_ended_" + message.reason;
    if (!t.table[key]) return;
    floorAlert(t(key, { name: message.name || pointName(message.point_id) || String(message.point_id) }));
  });

  // Roll call ------------------------------------------------------------------------------------

  function rowOf(id) { return el.rollcall.querySelector('tr[data-point-id="' + id + '"]'); }

  client.on("roll_call", function (message) {
    state.rollcallAt = Date.now();
    var connected = 0, receiving = 0, reconnecting = 0, total = 0;
    state.points = {};
    (message.points || []).forEach(function (p) {
      total += 1;
      state.points[p.point_id] = p;
      if (isConnected(p.state)) connected += 1;
      if (p.state === "reconnecting") reconnecting += 1;
      if (p.state === "receiving" || p.state === "floor") receiving += 1;
      var row = rowOf(p.point_id);
      if (!row) {
        row = el.rollcall.querySelector("tr[data-point-id]").cloneNode(true);
        row.setAttribute("data-point-id", String(p.point_id));
        row.querySelector("[data-mute]").setAttribute("data-mute", String(p.point_id));
        row.querySelector("[data-grant]").setAttribute("data-grant", String(p.point_id));
        el.rollcall.appendChild(row);
      }
      row.querySelector(".rc-point").textContent = p.name;
      row.setAttribute("data-state", p.state);
      row.querySelector(".state-dot").setAttribute("data-state", p.state);
      row.querySelector(".rc-state").textContent = t("state_" + p.state);
      row.querySelector(".hand-badge").hidden = !p.hand;
      row.classList.toggle("has-hand", !!p.hand);
      row.querySelector(".mute-badge").hidden = !p.muted;
      row.querySelector(".rc-talk").textContent = UI.formatDuration(p.talk_seconds || 0);
      var mute = row.querySelector("[data-mute]");
      mute.setAttribute("aria-pressed", p.muted ? "true" : "false");
      mute.textContent = p.muted ? t("unmute") : t("mute");
      mute.disabled = !isConnected(p.state) && !p.muted;
    });
    el.summary.textContent = t(reconnecting ? "summary_reconnecting" : "summary",
                               { connected: connected, total: total, receiving: receiving, reconnecting: reconnecting });
    state.order = (message.points || []).map(function (p) { return p.point_id; });
    sortRows();
    updateGrantButtons();
  });

  // The server lists the points in the one alphabetical order (server/collation.py): the
  // board keeps it within each level of attention (an open alarm, red, absent, amber, green).
  function sortRows() {
    var wanted = state.order.slice().sort(function (a, b) {
      var ra = Q ? Q.rank(state.quality[a]) : 0, rb = Q ? Q.rank(state.quality[b]) : 0;
      return ra - rb || state.order.indexOf(a) - state.order.indexOf(b);
    });
    var rows = el.rollcall.querySelectorAll("tr[data-point-id]");
    var same = rows.length === wanted.length && wanted.every(function (id, i) {
      return rows[i].getAttribute("data-point-id") === String(id);
    });
    if (same) return;
    wanted.forEach(function (id) {
      var row = rowOf(id);
      if (row) el.rollcall.appendChild(row);
    });
  }

  // Quality: the server's figures once a second, alarms once each ----------------------------------

  function showQuality(row, p) {
    var label = row.querySelector(".q-state");
    label.setAttribute("data-q", p.state);
    label.textContent = t("q_" + p.state);
    row.setAttribute("data-q", p.state);
    row.classList.toggle("has-alarm", !!p.alarm);
    var text = Q.figures(p, t);
    if (p.reconnects) text += (text ? " · " : "") + t("q_reconnects", { n: p.reconnects });
    if (!p.connected && p.last_seen) text = t("q_last_seen", { time: clockTime(new Date(p.last_seen)) });
    row.querySelector(".q-figures").textContent = text;
    row.querySelector(".q-why").textContent = Q.reasons(p, t);
    var pre = p.precheck;
    row.querySelector(".q-line").title = pre ? t(pre.ok ? "precheck_ok" : "precheck_failed", {
      time: clockTime(new Date(pre.at)), rtt: Math.round(pre.rtt_ms || 0), kbps: Math.round(pre.bitrate_kbps || 0),
      detail: pre.detail }) : t("precheck_none");
    var spark = row.querySelector(".q-spark");
    spark.textContent = "";
    spark.appendChild(Q.sparkline(state.samples[p.bridge_point] || [], t));
  }

  client.on("quality", function (message) {
    if (!Q) return;
    (message.points || []).forEach(function (p) {
      state.quality[p.bridge_point] = p;
      Q.mergeSamples(state.samples, p, message.full);
      var row = rowOf(p.bridge_point);
      if (row) showQuality(row, p);
    });
    sortRows();
  });

  client.on("quality_alarm", function (alarm) {
    if (alarms) alarms.take(alarm);
  });

  client.on("precheck", function (message) {
    var p = state.quality[message.bridge_point];
    if (!p) return;
    p.precheck = message.result;
    var row = rowOf(message.bridge_point);
    if (row) showQuality(row, p);
  });

  function updateGrantButtons() {
    var holder = state.floor && state.floor.holder ? state.floor.holder.point_id : null;
    document.querySelectorAll("[data-grant]").forEach(function (button) {
      var id = Number(button.getAttribute("data-grant"));
      var point = state.points[id];
      button.disabled = !id || id === holder || (point ? !isConnected(point.state) : !button.closest(".hand-queue"));
    });
    el.rollcall.querySelectorAll("tr[data-point-id]").forEach(function (row) {
      row.classList.toggle("is-holder", Number(row.getAttribute("data-point-id")) === holder);
    });
  }

  function tickTalk() {
    var holder = state.floor && state.floor.holder ? state.floor.holder.point_id : null;
    if (!holder || !state.points[holder]) return;
    var row = rowOf(holder);
    if (row) {
      var talked = state.points[holder].talk_seconds + (Date.now() - state.rollcallAt) / 1000;
      row.querySelector(".rc-talk").textContent = UI.formatDuration(talked);
    }
  }

  document.addEventListener("click", function (event) {
    var target = event.target.closest("[data-grant], [data-dismiss], [data-mute]");
    if (!target || target.disabled) return;
    if (target.hasAttribute("data-grant")) {
      var fields = { point_id: Number(target.getAttribute("data-grant")) };
      if (el.limit.value) fields.limit_seconds = Number(el.limit.value);
      client.send("grant_floor", fields);
    } else if (target.hasAttribute("data-dismiss")) {
      client.send("lower_hand", { point_id: Number(target.getAttribute("data-dismiss")) });
    } else {
      var id = Number(target.getAttribute("data-mute"));
      client.send("mute", { point_id: id, muted: target.getAttribute("aria-pressed") !== "true" });
    }
  });

  // Questions ------------------------------------------------------------------------------------

  client.on("question", function (q) {
    if (!q.id || state.questions[q.id]) return;
    state.questions[q.id] = q;
    state.questionTotal += 1;
    var item = $("question-item").content.firstElementChild.cloneNode(true);
    var from = q.from || "";
    var point = q.point_id ? pointName(q.point_id) : "";
    item.querySelector(".question-from").textContent = point && point !== from ? t("from_point", { name: from, point: point }) : from;
    var at = item.querySelector(".question-at");
    if (q.at) {
      at.setAttribute("datetime", q.at);
      at.textContent = clockTime(q.at);
    }
    item.querySelector(".question-text").textContent = q.text;
    item.classList.add("is-new");
    el.questions.insertBefore(item, el.questions.firstChild);
    setTimeout(function () { item.classList.remove("is-new"); }, 4000);
    el.questionsEmpty.hidden = true;
    el.questionCount.textContent = String(state.questionTotal);
  });

  // Clocks ---------------------------------------------------------------------------------------

  setInterval(function () { tickClock(); tickFloor(); tickTalk(); }, 1000);

  startCamera();
  client.connect();
  B.console = { client: client, state: state };
})();
