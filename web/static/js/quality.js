/* The roll-call board's quality pieces, shared by the console and the board page:
   a point's figures, its sparkline (inline SVG, no library), the attention order, and alarms
   (a banner and a tone, once per alarm). */
(function () {
  "use strict";

  var B = window.Bridgecast = window.Bridgecast || {};
  var SVG = "http://www.w3.org/2000/svg";
  // Points needing attention first: an open alarm, then red, absent, amber, green.
  var RANK = { red: 0, absent: 1, amber: 2, green: 3 };
  // Samples kept per point (10 minutes at one per 5 s, as the server keeps).
  var MAX_SAMPLES = 120;

  function rank(point) {
    if (!point) return 4;
    return (point.alarm ? 0 : 10) + (RANK[point.state] === undefined ? 4 : RANK[point.state]);
  }

  function number(value, digits) {
    if (typeof value !== "number") return "–";
    return value.toFixed(digits === undefined ? 0 : digits);
  }

  /** "RTT 42 ms · loss 3.1 % · jitter 6 ms · 1180 kbit/s" in the page's words. */
  function figures(point, t) {
    if (!point || !point.connected) return "";
    var parts = [];
    if (typeof point.rtt_ms === "number") parts.push(t("q_rtt", { v: number(point.rtt_ms) }));
    if (typeof point.loss_pct === "number") parts.push(t("q_loss", { v: number(point.loss_pct, 1) }));
    if (typeof point.jitter_ms === "number") parts.push(t("q_jitter", { v: number(point.jitter_ms) }));
    if (typeof point.bitrate_out_kbps === "number") parts.push(t("q_out", { v: number(point.bitrate_out_kbps) }));
    if (typeof point.bitrate_in_kbps === "number" && point.bitrate_in_kbps >= 20) {
      parts.push(t("q_in", { v: number(point.bitrate_in_kbps) }));
    }
    if (typeof point.fps === "number") parts.push(t("q_fps", { v: number(point.fps) }));
    if (typeof point.freezes_per_min === "number" && point.freezes_per_min > 0) {
      parts.push(t("q_freezes", { v: number(point.freezes_per_min, 1) }));
    }
    // Each figure on one line; lines break between figures.
    return parts.map(function (part) { return part.replace(/ /g, "\u00a0"); }).join(" · ");
  }

  /** Why a point is amber or red, in words: "high loss, slow round trip". */
  function reasons(point, t) {
    return (point && point.reasons || []).map(function (code) {
      return t.table["reason_" + code] ? t("reason_" + code) : code;
    }).join(", ");
  }

  /** Keep a point's samples: the whole history from a full message, appended otherwise. */
  function mergeSamples(store, point, full) {
    var id = point.bridge_point;
    if (full || !store[id]) store[id] = [];
    if (point.samples) store[id] = store[id].concat(point.samples).slice(-MAX_SAMPLES);
    return store[id];
  }

  /** The last minutes as bars: height the bitrate sent (relative to the highest), colour the state. */
  function sparkline(samples, t) {
    var width = 96, height = 22, slot = width / MAX_SAMPLES;
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "sparkline");
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("width", String(width));
    svg.setAttribute("height", String(height));
    svg.setAttribute("role", "img");
    var top = 1;
    samples.forEach(function (s) { if (typeof s[4] === "number" && s[4] > top) top = s[4]; });
    var offset = width - samples.length * slot;
    samples.forEach(function (s, i) {
      var bar = document.createElementNS(SVG, "rect");
      var share = s[1] === "absent" ? 1 : (typeof s[4] === "number" ? Math.max(0.12, s[4] / top) : 0.12);
      var h = Math.max(2, share * (height - 2));
      bar.setAttribute("x", (offset + i * slot).toFixed(2));
      bar.setAttribute("y", (height - h).toFixed(2));
      bar.setAttribute("width", Math.max(0.6, slot - 0.25).toFixed(2));
      bar.setAttribute("height", h.toFixed(2));
      bar.setAttribute("class", "spark-" + s[1]);
      svg.appendChild(bar);
    });
    var last = samples[samples.length - 1];
    var title = document.createElementNS(SVG, "title");
    title.textContent = last ? t("spark_title", { minutes: Math.round(samples.length * 5 / 60) || 1 }) : "";
    svg.appendChild(title);
    return svg;
  }

  /** A short tone made in the page (Web Audio): no file, no library. */
  function tone() {
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    try {
      tone.context = tone.context || new Context();
      var ctx = tone.context;
      if (ctx.state === "suspended") ctx.resume();
      [0, 0.28].forEach(function (at) {
        var osc = ctx.createOscillator(), gain = ctx.createGain();
        osc.frequency.value = 880;
        gain.gain.setValueAtTime(0.0001, ctx.currentTime + at);
        gain.gain.exponentialRampToValueAtTime(0.25, ctx.currentTime + at + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + at + 0.22);
        osc.connect(gain).connect(ctx.destination);
        osc.start(ctx.currentTime + at);
        osc.stop(ctx.currentTime + at + 0.24);
      });
      tone.played = (tone.played || 0) + 1;
    } catch (e) { /* no sound device: the banner says it */ }
  }

  /**
   * Alarms on a board: each alarm id is shown once (banner and tone), whatever number of
   * times it arrives (a reconnect, a poll); "recovered" clears the point's banner line.
   */
  function Alarms(container, t, onChange) {
    this.container = container;
    this.t = t;
    this.seen = {};
    this.open = {};
    this.onChange = onChange || function () {};
    this.shown = 0;
  }
  Alarms.prototype.take = function (alarm, quiet) {
    if (!alarm || !alarm.id || this.seen[alarm.id]) return false;
    this.seen[alarm.id] = true;
    var id = alarm.bridge_point;
    if (alarm.alarm === "recovered") {
      delete this.open[id];
    } else {
      this.open[id] = alarm;
      if (!quiet) { this.shown += 1; tone(); }
    }
    this.render();
    this.onChange(alarm);
    return true;
  };
  Alarms.prototype.render = function () {
    var self = this, ids = Object.keys(this.open);
    this.container.hidden = ids.length === 0;
    this.container.textContent = "";
    ids.forEach(function (id) {
      var a = self.open[id];
      var line = document.createElement("p");
      line.className = "alarm-line alarm-" + a.alarm;
      line.setAttribute("data-point-id", String(id));
      var why = (a.reasons || []).map(function (code) {
        return self.t.table["reason_" + code] ? self.t("reason_" + code) : code;
      }).join(", ");
      line.textContent = self.t("alarm_" + a.alarm, { name: a.name || String(id), why: why });
      var close = document.createElement("button");
      close.type = "button";
      close.className = "alarm-close";
      close.setAttribute("aria-label", self.t("alarm_dismiss"));
      close.textContent = "×";
      close.addEventListener("click", function () { delete self.open[id]; self.render(); });
      line.appendChild(close);
      self.container.appendChild(line);
    });
    document.body.setAttribute("data-alarms", String(ids.length));
  };

  B.quality = { rank: rank, figures: figures, reasons: reasons, mergeSamples: mergeSamples, sparkline: sparkline,
                Alarms: Alarms, tone: tone };
})();
