/* A member's player: the program with sound toggle, who is speaking, questions. */
(function () {
  "use strict";

  var B = window.Bridgecast;
  if (!B || !B.LiveClient || !B.ui) return;
  var UI = B.ui;
  var config = UI.readJSON("live-config");
  if (!config) return;
  var t = UI.Strings("live-strings");
  var $ = function (id) { return document.getElementById(id); };

  // An administrator who is not hosting this page watches as a member.
  var client = new B.LiveClient(config, config.role === "member" ? { as: "member" } : {});
  var el = {
    stage: $("stage"), program: $("program"), waiting: $("waiting"), waitingText: $("waiting-text"),
    status: $("session-status"), floorLine: $("floor-line"), enableSound: $("enable-sound"),
    toggleSound: $("toggle-sound"), fullscreen: $("fullscreen"), reconnecting: $("reconnecting"),
    form: $("question-form"), text: $("question-text"), questionStatus: $("question-status"),
    conn: $("conn-state"), ended: $("ended"), endedReason: $("ended-reason"),
  };
  var state = { status: el.stage.getAttribute("data-status"), picture: false, ended: false };

  client.on("status", function (s) {
    el.conn.setAttribute("data-state", s.state);
    el.conn.textContent = t("conn_" + s.state);
    el.reconnecting.hidden = !(s.state === "reconnecting" && client.everJoined);
    if (s.state === "closed" && s.reason === "removed") showEnded(t("ended_removed"));
  });

  client.on("session", function (session) {
    state.status = session.status;
    el.stage.setAttribute("data-status", session.status);
    el.status.className = "badge badge-" + session.status;
    el.status.textContent = t("status_" + session.status);
    if (session.status === "live") {
      el.waitingText.textContent = t("connecting_program");
      play();
    } else if (session.status === "ended" || session.status === "cancelled") {
      showEnded(t("ended_default"));
    } else {
      el.waitingText.textContent = t("waiting");
    }
    updateWaiting();
    showFloorLine();
  });

  client.on("floor", function (floor) {
    state.floor = floor;
    showFloorLine();
  });

  function showFloorLine() {
    var holder = state.floor && state.floor.holder;
    var live = state.status === "live";
    el.floorLine.hidden = !live;
    el.floorLine.textContent = !holder ? t("floor_speaker")
      : t(holder.reconnecting ? "floor_point_reconnecting" : "floor_point", { name: holder.name });
    el.floorLine.classList.toggle("is-reconnecting", !!(holder && holder.reconnecting));
    el.floorLine.classList.toggle("is-hall", !!holder);
  }

  client.on("removed", function () { showEnded(t("ended_removed")); });

  function showEnded(reason) {
    if (state.ended) return;
    state.ended = true;
    el.endedReason.textContent = reason;
    el.ended.hidden = false;
    client.close();
    el.program.srcObject = null;
  }

  function updateWaiting() {
    el.stage.setAttribute("data-picture", state.picture ? "yes" : "no");
    el.waiting.hidden = state.status === "live" && state.picture;
  }

  client.openView({ video: el.program, onTrack: function () { if (state.status === "live") play(); } });

  var sound = UI.ProgramSound({
    video: el.program, enableButton: el.enableSound, toggleButton: el.toggleSound,
    isLive: function () { return state.status === "live"; },
    label: function (muted) { return muted ? t("unmute_sound") : t("mute_sound"); },
  });
  function play() { sound.play(); }

  function pictureChanged() {
    var has = el.program.videoWidth > 0;
    if (has !== state.picture) { state.picture = has; updateWaiting(); }
  }
  ["resize", "playing", "loadeddata"].forEach(function (type) { el.program.addEventListener(type, pictureChanged); });
  setInterval(pictureChanged, 2000);
  el.fullscreen.addEventListener("click", function () {
    if (document.fullscreenElement) document.exitFullscreen();
    else if (el.stage.requestFullscreen) el.stage.requestFullscreen().catch(function () { /* refused */ });
  });
  document.addEventListener("fullscreenchange", function () {
    el.fullscreen.textContent = document.fullscreenElement ? t("exit_fullscreen") : t("fullscreen");
  });

  el.form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = el.text.value.trim();
    if (!text) return;
    if (client.send("question", { text: text.slice(0, 1000) })) {
      el.text.value = "";
      el.questionStatus.textContent = "";
    } else {
      el.questionStatus.textContent = t("not_connected");
    }
  });
  client.on("question_received", function () { el.questionStatus.textContent = t("question_sent"); });
  client.on("error", function (e) {
    if (e.request === "question") el.questionStatus.textContent = t("question_error", { message: e.message || e.code });
  });

  updateWaiting();
  client.connect();
  B.member = { client: client, state: state };
})();
