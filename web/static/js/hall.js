/* A hall's big screen: the program full screen, the waiting screen with a connection test,
 * raise hand, the floor (camera on air), questions. */
(function () {
  "use strict";

  var B = window.Bridgecast;
  if (!B || !B.LiveClient || !B.ui) return;
  var UI = B.ui;
  var config = UI.readJSON("live-config");
  if (!config) return;
  var t = UI.Strings("live-strings");
  var $ = function (id) { return document.getElementById(id); };

  var client = new B.LiveClient(config);
  var el = {
    stage: $("stage"), program: $("program"), waiting: $("waiting"), waitingText: $("waiting-text"),
    selfPreview: $("self-preview"), selfError: $("self-error"), micLevel: $("mic-level"),
    checkWs: $("check-ws"), checkView: $("check-view"), checkRtt: $("check-rtt"), checkVideo: $("check-video"),
    checkCamera: $("check-camera"),
    floorFrame: $("floor-frame"), floorLeft: $("floor-left"), floorPreview: $("floor-preview"),
    floorSelfState: $("floor-self-state"),
    enableSound: $("enable-sound"), reconnecting: $("reconnecting"), notice: $("notice"), muteFlag: $("mute-flag"),
    questionForm: $("question-form"), questionText: $("question-text"), questionCancel: $("question-cancel"),
    bar: $("bar"), barStatus: $("bar-status"), barFloor: $("bar-floor"), hand: $("raise-hand"),
    toggleQuestion: $("toggle-question"), toggleSound: $("toggle-sound"), fullscreen: $("fullscreen"),
    barConn: $("bar-conn"), ended: $("ended"), endedReason: $("ended-reason"),
  };

  var state = {
    status: el.stage.getAttribute("data-status"), floor: null, floorAt: 0, holding: false,
    hand: false, selfStream: null, audioContext: null, publishStream: null, publish: null,
    view: null, stats: null, picture: false, muted: false, ended: false,
  };

  // Small UI helpers -----------------------------------------------------------------------------

  function check(row, ok, text) {
    row.setAttribute("data-ok", ok);
    row.querySelector("dd").textContent = text;
  }

  function notice(text, sticky) {
    el.notice.textContent = text;
    el.notice.hidden = false;
    clearTimeout(notice.timer);
    if (!sticky) notice.timer = setTimeout(function () { el.notice.hidden = true; }, 6000);
  }

  function errorText(e) { return (e && (e.message || e.name)) || ""; }

  // Connection ----------------------------------------------------------------------------------------

  client.on("status", function (s) {
    el.barConn.setAttribute("data-state", s.state);
    if (s.state === "online") check(el.checkWs, "yes", t("ok_connected"));
    else check(el.checkWs, s.state === "closed" ? "no" : "pending", t("ws_" + s.state));
    el.reconnecting.hidden = !(s.state === "reconnecting" && client.everJoined);
    // A hall holding the floor keeps it for the server's grace period: say so.
    el.reconnecting.textContent = state.holding ? t("reconnecting_floor") : t("ws_reconnecting");
    if (s.state === "closed") {
      el.barConn.querySelector(".bar-conn-text").textContent = t("ws_closed");
      if (s.reason === "removed") showEnded(t("ended_removed"));
    }
  });

  client.on("rtt", function (r) {
    var text = t("rtt", { ms: Math.round(r.ms) });
    check(el.checkRtt, r.ms < 150 ? "yes" : r.ms < 400 ? "warn" : "no", text);
    el.barConn.querySelector(".bar-conn-text").textContent = text;
    el.barConn.setAttribute("data-quality", r.ms < 150 ? "good" : r.ms < 400 ? "fair" : "poor");
  });

  client.on("error", function (e) {
    if (e.code === "rate_limited") notice(t("err_rate_limited"));
    else if (e.request !== "offer") notice(t("error", { message: e.message || e.code }));
  });

  client.on("removed", function () { showEnded(t("ended_removed")); });

  // Session status and the waiting screen -------------------------------------------------------

  client.on("session", function (session) {
    state.status = session.status;
    el.stage.setAttribute("data-status", session.status);
    el.barStatus.className = "badge badge-" + session.status;
    el.barStatus.textContent = t("status_" + session.status);
    if (session.status === "live") {
      el.waitingText.textContent = t("connecting_program");
      check(el.checkVideo, "pending", t("video_none"));
      stopSelfPreview();
      play();
    } else if (session.status === "ended" || session.status === "cancelled") {
      showEnded(t("ended_default"));
    } else {
      el.waitingText.textContent = t("waiting");
      startSelfPreview();
    }
    updateWaiting();
    showFloorLine();
  });

  function updateWaiting() {
    var live = state.status === "live";
    el.stage.setAttribute("data-picture", state.picture ? "yes" : "no");
    el.waiting.hidden = live && state.picture;
    el.waiting.classList.toggle("is-connecting", live);
  }

  function showEnded(reason) {
    if (state.ended) return;
    state.ended = true;
    el.endedReason.textContent = reason;
    el.ended.hidden = false;
    el.stage.setAttribute("data-status", "ended");
    stopPublishing();
    stopSelfPreview();
    client.close();
    el.program.srcObject = null;
  }

  // The hall's own camera before the session (camera check, microphone level) ------------------

  function startSelfPreview() {
    if (state.selfStream || state.ended || !navigator.mediaDevices) return;
    state.selfStream = "pending";
    navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 1280 }, height: { ideal: 720 } }, audio: true })
      .then(function (stream) {
        if (state.selfStream !== "pending" || state.status === "live") {
          stream.getTracks().forEach(function (track) { track.stop(); });
          if (state.selfStream === "pending") state.selfStream = null;
          return;
        }
        state.selfStream = stream;
        el.selfPreview.srcObject = stream;
        el.selfError.hidden = true;
        check(el.checkCamera, "yes", t("camera_ok"));
        meter(stream);
      }, function (error) {
        state.selfStream = null;
        el.selfError.textContent = t("camera_error", { message: errorText(error) });
        el.selfError.hidden = false;
        check(el.checkCamera, "no", t("camera_error", { message: errorText(error) }));
      });
  }

  function meter(stream) {
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!Context || !stream.getAudioTracks().length) return;
    try {
      var context = new Context();
      state.audioContext = context;
      var analyser = context.createAnalyser();
      analyser.fftSize = 512;
      context.createMediaStreamSource(stream).connect(analyser);
      var data = new Uint8Array(analyser.fftSize);
      var loop = function () {
        if (state.audioContext !== context) return;
        analyser.getByteTimeDomainData(data);
        var peak = 0;
        for (var i = 0; i < data.length; i++) peak = Math.max(peak, Math.abs(data[i] - 128) / 128);
        el.micLevel.value = Math.max(peak, el.micLevel.value * 0.85);
        requestAnimationFrame(loop);
      };
      loop();
      var resume = function () { if (context.state === "suspended") context.resume().catch(function () { /* closed */ }); };
      document.addEventListener("click", resume, { once: true });
    } catch (e) { /* no meter */ }
  }

  function stopSelfPreview() {
    if (state.selfStream && state.selfStream !== "pending") {
      state.selfStream.getTracks().forEach(function (track) { track.stop(); });
    }
    state.selfStream = null;
    el.selfPreview.srcObject = null;
    if (state.audioContext) { state.audioContext.close(); state.audioContext = null; }
  }

  // The program -----------------------------------------------------------------------------------

  state.view = client.openView({
    video: el.program,
    onState: function (s) {
      var ok = s === "connected" ? "yes" : s === "failed" || s === "refused" ? "no" : "pending";
      check(el.checkView, ok, t.table["pc_" + s] ? t("pc_" + s) : s);
    },
    onTrack: function () { if (state.status === "live") play(); },
  });

  var sound = UI.ProgramSound({
    video: el.program, enableButton: el.enableSound, toggleButton: el.toggleSound,
    isLive: function () { return state.status === "live"; },
    label: function (muted) { return muted ? t("unmute_sound") : t("mute_sound"); },
  });
  function play() { sound.play(); }

  function pictureChanged() {
    var has = el.program.videoWidth > 0;
    if (has !== state.picture) {
      state.picture = has;
      updateWaiting();
    }
  }
  el.program.addEventListener("resize", pictureChanged);
  el.program.addEventListener("playing", pictureChanged);
  el.program.addEventListener("loadeddata", pictureChanged);

  setInterval(function () {
    pictureChanged();
    if (!state.view) return;
    state.view.inboundStats(state.stats).then(function (sample) {
      if (!sample) return;
      // What this screen decodes goes to the speaker's board (the server measures the link itself).
      client.send("stats", {
        frames_decoded: sample.frames, freezes: sample.freezes || 0,
        fps: typeof sample.fps === "number" ? Math.min(240, Math.round(sample.fps)) : null,
        audio_level: typeof sample.audioLevel === "number" ? Math.round(Math.min(1, sample.audioLevel) * 100) : null,
      });
      if (state.status !== "live") { state.stats = sample; return; }
      if (sample.bitrate != null) {
        var fps = sample.fps != null ? Math.round(sample.fps) : 0;
        var ok = sample.bitrate > 100000 && fps >= 10 ? "yes" : sample.bitrate > 0 ? "warn" : "no";
        check(el.checkVideo, ok, t("video_stats", {
          bitrate: UI.formatBitrate(sample.bitrate), fps: fps,
          width: sample.width || 0, height: sample.height || 0,
        }));
      }
      state.stats = sample;
    });
  }, 2000);

  // The connection test: camera and microphone through the hub and back ----------------------------

  var precheckButton = $("run-precheck"), precheckRow = $("check-hub"), echoVideo = $("precheck-echo");
  var PRECHECK_MS = 8000;

  function csrf() {
    var match = document.cookie.match(/(?:^|;\s*)bc_csrf=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function gathered(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise(function (resolve) {
      var timer = setTimeout(resolve, 3000);
      pc.addEventListener("icegatheringstatechange", function () {
        if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
      });
    });
  }

  function runPrecheck() {
    if (!precheckButton || precheckButton.disabled) return;
    precheckButton.disabled = true;
    check(precheckRow, "pending", t("precheck_running"));
    var stream = state.selfStream && state.selfStream.getTracks ? Promise.resolve(state.selfStream)
      : navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    var pc = null, location = null;
    stream.then(function (media) {
      pc = new RTCPeerConnection({ iceServers: config.iceServers || [] });
      media.getTracks().forEach(function (track) { pc.addTransceiver(track, { direction: "sendrecv", streams: [media] }); });
      pc.addEventListener("track", function (event) {
        if (event.track.kind === "video") {
          echoVideo.srcObject = event.streams[0] || new MediaStream([event.track]);
          echoVideo.hidden = false;
        }
      });
      return pc.createOffer().then(function (offer) { return pc.setLocalDescription(offer); })
        .then(function () { return gathered(pc); })
        .then(function () {
          return fetch(precheckButton.getAttribute("data-endpoint"), {
            method: "POST", credentials: "same-origin", body: pc.localDescription.sdp,
            headers: { "Content-Type": "application/sdp", "X-CSRF-Token": csrf() },
          });
        });
    }).then(function (response) {
      if (response.status !== 201) return response.json().then(function (body) { throw new Error(body.message || response.status); });
      location = response.headers.get("Location");
      return response.text();
    }).then(function (answer) {
      return pc.setRemoteDescription({ type: "answer", sdp: answer });
    }).then(function () {
      return new Promise(function (resolve) { setTimeout(resolve, PRECHECK_MS); });
    }).then(function () {
      return fetch(location, { method: "DELETE", credentials: "same-origin", headers: { "X-CSRF-Token": csrf() } });
    }).then(function (response) {
      if (!response.ok) throw new Error(String(response.status));
      return response.json();
    }).then(function (result) {
      if (result.ok) {
        check(precheckRow, "yes", t("precheck_ok", { rtt: Math.round(result.rtt_ms || 0), kbps: Math.round(result.bitrate_kbps || 0) }));
      } else {
        check(precheckRow, "no", t("precheck_failed", { why: t("precheck_" + result.detail) }));
      }
    }).catch(function (error) {
      check(precheckRow, "no", t("precheck_error", { message: error && error.message || String(error) }));
    }).then(function () {
      if (pc) pc.close();
      echoVideo.hidden = true;
      echoVideo.srcObject = null;
      precheckButton.disabled = false;
    });
  }

  if (precheckButton) precheckButton.addEventListener("click", runPrecheck);

  // Floor ------------------------------------------------------------------------------------------

  function own(pointId) { return pointId != null && pointId === config.pointId; }

  // The floor as the server has it. After a reconnect (or a reload) the welcome's floor
  // is the first news: a hall still holding the floor resumes publishing at once (no new
  // floor_granted comes), and one whose grace period ran out stops and is told why.
  var rejoined = false;
  client.on("status", function (s) { if (s.state === "online") rejoined = !!s.rejoined; });

  client.on("floor", function (floor) {
    var fromWelcome = rejoined;
    rejoined = false;
    state.floor = floor;
    state.floorAt = Date.now();
    var holder = floor.holder;
    var holding = !!holder && own(holder.point_id);
    var queued = (floor.queue || []).some(function (q) { return own(q.point_id); });
    state.hand = queued;
    showFloorLine();
    el.barFloor.classList.toggle("is-hall", !!holder);
    el.barFloor.classList.toggle("is-reconnecting", !!(holder && holder.reconnecting && !holding));
    setHand(holding ? "floor" : queued ? "up" : "down");
    if (holding && !state.holding) startPublishing();
    if (!holding && state.holding) {
      stopPublishing();
      if (fromWelcome) notice(t("revoked_dropped"), true);
    }
    tickFloor();
  });

  function showFloorLine() {
    var holder = state.floor && state.floor.holder;
    var live = state.status === "live";
    el.barFloor.textContent = !live ? "" : holder && own(holder.point_id) ? t("floor_self")
      : holder ? t(holder.reconnecting ? "floor_point_reconnecting" : "floor_point", { name: holder.name })
      : t("floor_speaker");
  }

  function setHand(mode) {
    el.hand.setAttribute("data-hand", mode);
    el.hand.setAttribute("aria-pressed", mode === "up" ? "true" : "false");
    el.hand.disabled = mode === "floor";
    el.hand.querySelector(".hand-label").textContent = mode === "floor" ? t("hand_floor") : mode === "up" ? t("lower") : t("raise");
    el.stage.setAttribute("data-hand", mode);
  }

  el.hand.addEventListener("click", function () {
    var mode = el.hand.getAttribute("data-hand");
    if (mode === "down" && client.send("raise_hand")) {
      setHand("up");
      notice(t("notice_hand"));
    } else if (mode === "up" && client.send("lower_hand")) {
      setHand("down");
      notice(t("notice_hand_lowered"));
    }
  });

  client.on("floor_granted", function () {
    notice(t("notice_granted"));
    if (!state.holding) startPublishing();
  });

  client.on("floor_revoked", function (message) {
    var key = "revoked_" + (message.reason || "revoked");
    notice(t.table[key] ? t(key) : t("revoked_revoked"));
    stopPublishing();
  });

  function startPublishing() {
    state.holding = true;
    el.stage.setAttribute("data-floor", "self");
    el.floorFrame.hidden = false;
    stopSelfPreview();
    if (state.publishStream) return;
    state.publishStream = "pending";
    navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    }).then(function (stream) {
      if (!state.holding) { stream.getTracks().forEach(function (track) { track.stop(); }); return; }
      state.publishStream = stream;
      el.floorPreview.srcObject = stream;
      state.publish = client.openPublish(stream, {
        // After a reconnect the hall publishes again only if it still holds the floor.
        shouldResume: function (welcome) {
          return !!(welcome.floor && welcome.floor.holder && own(welcome.floor.holder.point_id));
        },
        onState: function (s) {
          el.floorFrame.setAttribute("data-pc", s);
          el.floorSelfState.textContent = s === "connected" ? t("on_air") : t.table["pc_" + s] ? t("pc_" + s) : s;
        },
      });
    }, function (error) {
      state.publishStream = null;
      notice(t("publish_error", { message: errorText(error) }), true);
    });
  }

  function stopPublishing() {
    state.holding = false;
    el.stage.setAttribute("data-floor", "none");
    el.floorFrame.hidden = true;
    if (state.publish) { state.publish.close(false); state.publish = null; }
    if (state.publishStream && state.publishStream !== "pending") {
      state.publishStream.getTracks().forEach(function (track) { track.stop(); });
    }
    state.publishStream = null;
    el.floorPreview.srcObject = null;
  }

  function tickFloor() {
    var holder = state.floor && state.floor.holder;
    if (holder && own(holder.point_id) && typeof holder.remaining === "number") {
      var left = Math.max(0, holder.remaining - (Date.now() - state.floorAt) / 1000);
      el.floorLeft.textContent = t("remaining", { time: UI.formatDuration(left) });
      el.floorLeft.classList.toggle("is-short", left < 30);
    } else {
      el.floorLeft.textContent = "";
    }
  }
  setInterval(tickFloor, 1000);

  client.on("mute", function (message) {
    state.muted = !!message.muted;
    el.muteFlag.hidden = !state.muted;
    notice(state.muted ? t("notice_muted") : t("notice_unmuted"));
  });

  // Questions -----------------------------------------------------------------------------------------

  function toggleQuestion(open) {
    el.questionForm.hidden = !open;
    el.toggleQuestion.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) el.questionText.focus();
  }
  el.toggleQuestion.addEventListener("click", function () { toggleQuestion(el.questionForm.hidden); });
  el.questionCancel.addEventListener("click", function () { toggleQuestion(false); });
  el.questionForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = el.questionText.value.trim();
    if (!text) return;
    if (client.send("question", { text: text.slice(0, 1000) })) {
      el.questionText.value = "";
      toggleQuestion(false);
    }
  });
  client.on("question_received", function () { notice(t("notice_question")); });

  // Full screen and the overlay bar -------------------------------------------------------------

  el.fullscreen.addEventListener("click", function () {
    if (document.fullscreenElement) document.exitFullscreen();
    else if (el.stage.requestFullscreen) el.stage.requestFullscreen().catch(function () { /* refused */ });
  });
  document.addEventListener("fullscreenchange", function () {
    el.fullscreen.textContent = document.fullscreenElement ? t("exit_fullscreen") : t("fullscreen");
  });

  var idleTimer = null;
  function wake() {
    el.stage.removeAttribute("data-idle");
    clearTimeout(idleTimer);
    idleTimer = setTimeout(function () {
      var busy = !el.questionForm.hidden || el.bar.contains(document.activeElement) && document.activeElement !== document.body;
      if (state.status === "live" && state.picture && !busy) el.stage.setAttribute("data-idle", "true");
    }, 4000);
  }
  ["mousemove", "mousedown", "keydown", "touchstart"].forEach(function (type) {
    document.addEventListener(type, wake, { passive: true });
  });
  wake();

  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && !el.questionForm.hidden) toggleQuestion(false);
  });

  // An unattended hall screen must not blank during a lecture (docs/operations.md).
  // The browser releases the lock when the page is hidden: ask again when it is back.
  function keepScreenOn() {
    if (!navigator.wakeLock || document.visibilityState !== "visible" || state.ended) return;
    navigator.wakeLock.request("screen").catch(function () { /* not allowed here (no HTTPS) */ });
  }
  document.addEventListener("visibilitychange", keepScreenOn);
  keepScreenOn();

  if (state.status !== "live") startSelfPreview();
  updateWaiting();
  client.connect();
  B.hall = { client: client, state: state };
})();
