/* The roll-call board page: every invited point's link, refreshed from GET .../roll-call every 2 s;
   a new alarm shows a banner and plays a tone once. */
(function () {
  "use strict";

  var B = window.Bridgecast;
  if (!B || !B.ui || !B.quality) return;
  var UI = B.ui, Q = B.quality;
  var config = UI.readJSON("board-config");
  if (!config) return;
  var t = UI.Strings("live-strings");
  var clockTime = UI.timeFormatter(config.timezone, config.locale, "time");
  var $ = function (id) { return document.getElementById(id); };
  var rows = $("board-rows"), list = $("alarm-list"), empty = $("alarms-empty"), error = $("board-error");
  var relayRows = $("relay-rows"), relaysTable = $("relays-table"), relaysEmpty = $("relays-empty");
  var alarms = new Q.Alarms($("quality-alarms"), t);
  var REFRESH_MS = 2000;

  function cell(row, selector) { return row.querySelector(selector); }

  function render(board) {
    var byId = {};
    rows.querySelectorAll("tr[data-point-id]").forEach(function (row) { byId[row.getAttribute("data-point-id")] = row; });
    board.points.forEach(function (p) {
      var row = byId[String(p.bridge_point)];
      if (!row) return;
      row.setAttribute("data-q", p.state);
      row.classList.toggle("has-alarm", !!p.alarm);
      var label = cell(row, ".q-state");
      label.setAttribute("data-q", p.state);
      label.textContent = t("q_" + p.state);
      var spark = cell(row, ".q-spark");
      spark.textContent = "";
      spark.appendChild(Q.sparkline(p.samples || [], t));
      cell(row, ".q-why").textContent = Q.reasons(p, t);
      var text = Q.figures(p, t);
      if (p.reconnects) text += (text ? " · " : "") + t("q_reconnects", { n: p.reconnects });
      if (!p.connected && p.last_seen) text = t("q_last_seen", { time: clockTime(new Date(p.last_seen)) });
      cell(row, ".q-figures").textContent = text;
      var pre = p.precheck;
      cell(row, ".q-precheck").textContent = pre ? t(pre.ok ? "precheck_ok" : "precheck_failed", {
        time: clockTime(new Date(pre.at)), rtt: Math.round(pre.rtt_ms || 0),
        kbps: Math.round(pre.bitrate_kbps || 0), detail: pre.detail }) : t("precheck_none");
      cell(row, ".rc-served").textContent = p.served_by === "hub" ? t("relay_hub") : p.served_by;
      rows.appendChild(row);  // in the server's order: attention first
    });
    renderRelays(board.relays || []);
    var names = {};
    board.points.forEach(function (p) { names[p.bridge_point] = p.name; });
    list.textContent = "";
    board.alarms.forEach(function (a) {
      var item = document.createElement("li");
      item.setAttribute("data-alarm", a.alarm);
      var at = document.createElement("time");
      at.dateTime = a.at;
      at.textContent = clockTime(new Date(a.at));
      var what = document.createElement("span");
      var why = Q.reasons(a, t);
      what.textContent = (names[a.bridge_point] || a.bridge_point) + " · " + t("alarm_name_" + a.alarm) + (why ? " (" + why + ")" : "");
      item.appendChild(at);
      item.appendChild(what);
      list.appendChild(item);
    });
    empty.hidden = board.alarms.length > 0;
  }

  function renderRelays(relays) {
    relayRows.textContent = "";
    relays.forEach(function (r) {
      var row = document.createElement("tr");
      row.setAttribute("data-relay", r.name);
      row.setAttribute("data-state", r.carrying ? "receiving" : "reconnecting");
      var values = [
        r.name,
        (r.carrying ? t("relay_up") : t("relay_down")) + (r.uplinks > 1 ? " ×" + r.uplinks : ""),
        String(r.viewers),
        r.cpu_percent == null ? "–" : r.cpu_percent + " %",
        r.rss_mib == null ? "–" : t("relay_mib", { n: r.rss_mib }),
        t("relay_beat", { n: Math.round(r.beat_age_seconds) })
      ];
      values.forEach(function (value, index) {
        var c = document.createElement(index === 0 ? "th" : "td");
        if (index === 0) c.scope = "row";
        c.textContent = value;
        row.appendChild(c);
      });
      relayRows.appendChild(row);
    });
    relaysTable.hidden = relays.length === 0;
    relaysEmpty.hidden = relays.length > 0;
  }

  function takeAlarms(board, quiet) {
    var names = {};
    board.points.forEach(function (p) { names[p.bridge_point] = p.name; });
    // Oldest first, so that a point's latest alarm decides whether its banner stays.
    board.alarms.slice().reverse().forEach(function (a) {
      alarms.take(Object.assign({ name: names[a.bridge_point] }, a), quiet);
    });
  }

  function refresh() {
    fetch(config.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error(String(response.status));
        return response.json();
      })
      .then(function (board) {
        error.hidden = true;
        render(board);
        takeAlarms(board, false);
      })
      .catch(function () { error.hidden = false; })
      .then(function () { setTimeout(refresh, REFRESH_MS); });
  }

  // What was already alarming when the page opened shows, without a tone; what comes later sounds once.
  render(config.board);
  takeAlarms(config.board, true);
  setTimeout(refresh, REFRESH_MS);
})();
