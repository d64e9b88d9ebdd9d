/* Bridgecast live pages' shared helpers, apart from the wire protocol (protocol.js).
 *
 * window.Bridgecast.ui: JSON blocks rendered by the templates, translated
 * strings, playing the program with sound, and formatting durations, bit
 * rates and times (in the configured time zone, not the browser's).
 * Loaded by the live templates before the page scripts; needs nothing else.
 */
(function () {
  "use strict";

  var NS = (window.Bridgecast = window.Bridgecast || {});

  /** The parsed content of a <script type="application/json" id="..."> block, or null. */
  function readJSON(id) {
    var el = document.getElementById(id);
    if (!el) return null;
    try { return JSON.parse(el.textContent); } catch (e) { return null; }
  }

  /** Translated strings from <script type="application/json" id="live-strings">, with {name} filling. */
  function Strings(id) {
    var table = readJSON(id || "live-strings") || {};
    var t = function (key, values) {
      var text = Object.prototype.hasOwnProperty.call(table, key) ? table[key] : key;
      if (values) {
        text = text.replace(/\{(\w+)\}/g, function (m, name) {
          return Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : m;
        });
      }
      return text;
    };
    t.table = table;
    return t;
  }

  /** Play a <video> with sound if the browser lets us, else muted; resolves to "sound" | "muted" | "failed". */
  var playing = typeof WeakMap === "function" ? new WeakMap() : null;

  function playWithSound(video, wantSound) {
    // One attempt at a time per element: a second unmute while the first
    // muted fallback plays would make the browser pause the video.
    var pending = playing && playing.get(video);
    if (pending) return pending;
    var activated = !navigator.userActivation || navigator.userActivation.hasBeenActive;
    if (!video.paused && video.muted && wantSound && !activated) return Promise.resolve("muted");
    video.muted = !wantSound;
    var attempt = video.play();
    if (!attempt || !attempt.then) return Promise.resolve(video.muted ? "muted" : "sound");
    var result = attempt.then(function () { return video.muted ? "muted" : "sound"; }, function (error) {
      if (error && error.name === "NotAllowedError" && !video.muted) {
        video.muted = true;
        return video.play().then(function () { return "muted"; }, function () { return "failed"; });
      }
      return error && error.name === "AbortError" ? (video.muted ? "muted" : "sound") : "failed";
    });
    var done = result.then(function (value) { if (playing) playing.delete(video); return value; });
    if (playing) playing.set(video, done);
    return done;
  }

  /**
   * The sound of a program <video>: with sound when the browser allows it,
   * otherwise muted with a visible "enable sound" button, and the first click
   * anywhere on the page turns the sound on.
   * options: {video, enableButton, toggleButton, isLive: () => bool, label: (muted) => text}
   * Returns {play(), refresh()}.
   */
  function ProgramSound(options) {
    var video = options.video;
    var state = { wantSound: true, autoMuted: false };

    function refresh(result) {
      if (result === "muted" && state.wantSound) state.autoMuted = true;
      var muted = video.muted;
      options.enableButton.hidden = !(muted && state.wantSound && options.isLive());
      options.toggleButton.setAttribute("aria-pressed", muted ? "true" : "false");
      options.toggleButton.textContent = options.label(muted);
      options.toggleButton.classList.toggle("is-off", muted);
      return result;
    }

    function unmute() {
      video.muted = false;
      video.play().then(refresh, refresh);
    }

    video.addEventListener("volumechange", function () { refresh(); });
    // The browser kept the sound off until someone used the page.
    document.addEventListener("pointerdown", function () {
      if (!state.autoMuted || !state.wantSound) return;
      state.autoMuted = false;
      unmute();
    }, true);
    options.enableButton.addEventListener("click", function () {
      state.wantSound = true;
      unmute();
    });
    options.toggleButton.addEventListener("click", function () {
      video.muted = !video.muted;
      state.wantSound = !video.muted;
      state.autoMuted = false;
      if (!video.muted) video.play().catch(function () { /* stays as it is */ });
      refresh();
    });

    return {
      play: function () {
        if (video.srcObject) playWithSound(video, state.wantSound).then(refresh);
      },
      refresh: refresh,
    };
  }

  function formatDuration(seconds) {
    if (seconds == null || !isFinite(seconds)) return "";
    var s = Math.max(0, Math.round(seconds));
    var h = Math.floor(s / 3600);
    var m = Math.floor((s % 3600) / 60);
    var r = s % 60;
    var mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? h + ":" : "") + mm + ":" + String(r).padStart(2, "0");
  }

  function formatBitrate(bps) {
    if (bps == null || !isFinite(bps)) return "";
    if (bps >= 1e6) return (bps / 1e6).toFixed(1) + " Mbit/s";
    return Math.round(bps / 1e3) + " kbit/s";
  }

  /**
   * Format times in ``zone`` (the configured [i18n] timezone, given to the page), not
   * in the browser's own: a hall's or speaker's computer may be set to another zone.
   * kind: "time" (14:05) or "datetime" (02/12/2026 14:05). An unknown zone falls back
   * to the browser's rather than failing.
   */
  function timeFormatter(zone, locale, kind) {
    var options = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
    if (kind === "datetime") { options.day = "2-digit"; options.month = "2-digit"; options.year = "numeric"; }
    var format = null;
    if (window.Intl && Intl.DateTimeFormat) {
      try {
        format = new Intl.DateTimeFormat(locale || "vi", Object.assign({ timeZone: zone || undefined }, options));
      } catch (e) {
        format = new Intl.DateTimeFormat(locale || "vi", options);
      }
    }
    return function (value) {
      var date = value instanceof Date ? value : new Date(value);
      if (isNaN(date.getTime())) return "";
      if (!format) return date.toISOString().slice(kind === "datetime" ? 0 : 11, 16).replace("T", " ");
      if (kind !== "datetime") return format.format(date);
      // dd/mm/yyyy hh:mm in every language, as the server's pages write it (render.format_datetime).
      var parts = {};
      format.formatToParts(date).forEach(function (part) { parts[part.type] = part.value; });
      return parts.day + "/" + parts.month + "/" + parts.year + " " + parts.hour + ":" + parts.minute;
    };
  }

  NS.ui = {
    readJSON: readJSON,
    Strings: Strings,
    playWithSound: playWithSound,
    ProgramSound: ProgramSound,
    formatDuration: formatDuration,
    formatBitrate: formatBitrate,
    timeFormatter: timeFormatter,
  };
})();
