/* Bridgecast live protocol (docs/protocol.md), apart from any page.
 *
 * window.Bridgecast.LiveClient: one websocket per endpoint; join, dispatch
 * server messages by type, reconnect with backoff, re-join and re-offer the
 * peer connections after a drop.
 * Its peer connections are window.Bridgecast.PeerLink (peer.js, loaded
 * before this file).
 *
 * No user-visible strings and no page here: the pages (console.js, hall.js,
 * member.js) translate states and errors, with the helpers of ui.js.
 */
(function () {
  "use strict";

  var NS = (window.Bridgecast = window.Bridgecast || {});

  var BACKOFF_MIN = 500;          // ms, first reconnect delay
  var BACKOFF_MAX = 15000;        // ms, longest delay between attempts
  var PING_EVERY = 5000;          // ms
  var PONG_DEADLINE = 16000;      // ms without any message: the socket is dead
  var CLOSE_FINAL = { 1000: "closed", 4003: "removed" };
  var CLOSE_ROLE_CHANGED = 4004;
  // Our own close of a socket without "leave" (a dead socket, the page going away):
  // the server treats it as a drop and keeps a hall's floor and hand for its grace period.
  var CLOSE_DROPPED = 4000;

  function socketURL(path) {
    var scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + location.host + path;
  }

  // ---------------------------------------------------------------------------------------------
  // LiveClient

  /**
   * @param {object} config  live-config: {sessionId, role, ws, iceServers, pointId}
   * @param {object} [options] {as: "member"} to ask for a lesser role
   *
   * Events (client.on(type, fn)): every server message type ("welcome", "floor",
   * "session", "answer", "error", ...), plus
   *   "status"  {state: "connecting"|"online"|"reconnecting"|"closed", attempt, delay, reason}
   *   "rtt"     {ms}
   *   "*"       every server message
   */
  function LiveClient(config, options) {
    this.config = config || {};
    this.options = options || {};
    this.handlers = {};
    this.peers = {};            // pc name -> PeerLink
    this.ws = null;
    this.joined = false;
    this.everJoined = false;
    this.welcome = null;
    this.state = "idle";
    this.attempt = 0;
    this.final = false;
    this.rtt = null;
    this._retryTimer = null;
    this._pingTimer = null;
    this._offers = [];
    this._lastMessage = 0;
    this.dropped = false;
    var self = this;
    window.addEventListener("online", function () { if (!self.final && !self.ws) self._reconnectNow(); });
    // A reload or a closed tab is not leaving: drop the socket, send no "leave".
    window.addEventListener("pagehide", function () { self.drop("pagehide"); });
    // Back from the browser's page cache with a dropped socket and closed peers:
    // load the page afresh rather than show a frozen one.
    window.addEventListener("pageshow", function (event) { if (event.persisted && self.dropped) location.reload(); });
  }

  LiveClient.prototype.on = function (type, fn) {
    (this.handlers[type] = this.handlers[type] || []).push(fn);
    var list = this.handlers[type];
    return function off() { var i = list.indexOf(fn); if (i >= 0) list.splice(i, 1); };
  };

  LiveClient.prototype.emit = function (type, message) {
    var list = (this.handlers[type] || []).slice();
    if (type !== "status" && type !== "rtt") list = list.concat(this.handlers["*"] || []);
    for (var i = 0; i < list.length; i++) {
      try { list[i](message, this); } catch (e) { console.error("bridgecast: handler for " + type, e); }
    }
  };

  LiveClient.prototype._setState = function (state, extra) {
    this.state = state;
    var detail = { state: state, attempt: this.attempt };
    if (extra) for (var k in extra) detail[k] = extra[k];
    this.emit("status", detail);
  };

  LiveClient.prototype.connect = function () {
    if (this.final || this.ws) return this;
    var self = this;
    var ws;
    this._setState(this.everJoined ? "reconnecting" : "connecting");
    try {
      ws = new WebSocket(socketURL(this.config.ws));
    } catch (e) {
      this._scheduleReconnect("error");
      return this;
    }
    this.ws = ws;
    this._offers = [];          // offers sent on this socket, oldest first: {link, generation}
    var opened = false;
    ws.onopen = function () {
      opened = true;
      self._lastMessage = Date.now();
      var join = { type: "join" };
      if (self.options.as) join.as = self.options.as;
      ws.send(JSON.stringify(join));
    };
    ws.onmessage = function (event) {
      if (ws !== self.ws) return;
      self._lastMessage = Date.now();
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (!message || typeof message.type !== "string") return;
      self._receive(message);
    };
    ws.onclose = function (event) {
      if (ws !== self.ws) return;
      self.ws = null;
      self.joined = false;
      self._stopPing();
      if (event.code === CLOSE_ROLE_CHANGED) {
        // The account's seat in the session changed (a new speaker, another hall): the page for
        // the new seat is another page.
        self._closePeers(false);
        window.location.reload();
        return;
      }
      var final = CLOSE_FINAL[event.code];
      if (self.final || final) {
        self.final = true;
        self._closePeers(false);
        self._setState("closed", { reason: self.finalReason || final, code: event.code });
        return;
      }
      if (!opened) {
        self._diagnose();
      } else {
        self._scheduleReconnect("dropped");
      }
    };
    ws.onerror = function () { /* onclose follows */ };
    return this;
  };

  LiveClient.prototype._receive = function (message) {
    var type = message.type;
    if (type === "welcome") {
      var again = this.everJoined;
      this.joined = true;
      this.everJoined = true;
      this.attempt = 0;
      this.welcome = message;
      this._startPing();
      this._setState("online", { rejoined: again });
      this.emit("welcome", message);
      if (message.session) this.emit("session", message.session);
      if (message.floor) this.emit("floor", message.floor);
      this._resumePeers(message, again);
      return;
    }
    if (type === "pong") {
      if (typeof message.t === "number") {
        this.rtt = Math.max(0, Date.now() - message.t);
        this.emit("rtt", { ms: this.rtt });
      }
      return;
    }
    if (type === "answer" || type === "redirect") {
      // The server answers offers in the order it got them: here, or with a relay to offer at.
      var head = this._offers.shift();
      if (head && head.link.name === message.pc) {
        if (type === "answer") head.link._answer(head.generation, message.sdp);
        else head.link._redirected(head.generation, message.url);
      }
    } else if (type === "renegotiate") {
      // Its relay died, or the floor came to this hall: offer that peer connection here again, now.
      var moved = this.peers[message.pc];
      if (moved && !moved.closed) moved.restart(message.reason || "renegotiate", true);
    } else if (type === "error") {
      if (message.request === "offer") {
        var refused = this._offers.shift();
        if (refused) refused.link._offerRefused(refused.generation, message);
      }
      if (message.code === "removed" || message.code === "session_closed") {
        this.finalReason = message.code;
        this.final = true;
      }
    } else if (type === "session" && (message.status === "ended" || message.status === "cancelled")) {
      this.finalReason = message.status;
      this.final = true;
    } else if (type === "removed") {
      this.finalReason = "removed";
      this.final = true;
    }
    this.emit(type, message);
  };

  /** The socket never opened: find out whether it is worth trying again. */
  LiveClient.prototype._diagnose = function () {
    var self = this;
    if (!window.fetch || this.config.sessionId == null) { this._scheduleReconnect("refused"); return; }
    fetch("/api/v1/sessions/" + encodeURIComponent(this.config.sessionId), { credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 401) return { stop: "unauthorized" };
        if (response.status === 403 || response.status === 404) return { stop: "forbidden" };
        if (!response.ok) return {};
        return response.json().then(function (body) {
          if (body && (body.status === "ended" || body.status === "cancelled")) {
            self.emit("session", { type: "session", id: body.id, title: body.title, status: body.status,
                                   actual_start: body.actual_start });
            return { stop: body.status };
          }
          return {};
        });
      })
      .catch(function () { return {}; })
      .then(function (result) {
        if (result && result.stop) {
          self.final = true;
          self.finalReason = result.stop;
          self._closePeers(false);
          self._setState("closed", { reason: result.stop });
        } else {
          self._scheduleReconnect("refused");
        }
      });
  };

  LiveClient.prototype._scheduleReconnect = function (reason) {
    if (this.final) return;
    clearTimeout(this._retryTimer);
    var base = Math.min(BACKOFF_MAX, BACKOFF_MIN * Math.pow(2, this.attempt));
    var delay = Math.round(base * (0.7 + Math.random() * 0.6));
    this.attempt += 1;
    this._setState("reconnecting", { delay: delay, reason: reason });
    var self = this;
    this._retryTimer = setTimeout(function () { self.connect(); }, delay);
  };

  LiveClient.prototype._reconnectNow = function () {
    clearTimeout(this._retryTimer);
    this.connect();
  };

  LiveClient.prototype._startPing = function () {
    this._stopPing();
    var self = this;
    var tick = function () {
      if (!self.ws || !self.joined) return;
      if (Date.now() - self._lastMessage > PONG_DEADLINE) {
        // Half-open socket (no pong): drop it and reconnect.
        var ws = self.ws;
        self.ws = null;
        self.joined = false;
        self._stopPing();
        try { ws.close(CLOSE_DROPPED, "no pong"); } catch (e) { /* already closing */ }
        self._scheduleReconnect("timeout");
        return;
      }
      self.send("ping", { t: Date.now() });
    };
    tick();
    this._pingTimer = setInterval(tick, PING_EVERY);
  };

  LiveClient.prototype._stopPing = function () {
    clearInterval(this._pingTimer);
    this._pingTimer = null;
  };

  /** Send one message; false when the socket is not open (nothing is queued). */
  LiveClient.prototype.send = function (type, fields) {
    var ws = this.ws;
    if (!ws || ws.readyState !== 1) return false;
    var message = { type: type };
    if (fields) for (var k in fields) message[k] = fields[k];
    ws.send(JSON.stringify(message));
    return true;
  };

  /**
   * Leave the session on purpose (a button, the session's end): tell the server
   * ("leave"), which ends a hall's floor and lowers its hand at once.
   */
  LiveClient.prototype.close = function () {
    if (this.final && !this.ws) return;
    this.final = true;
    this.finalReason = this.finalReason || "left";
    clearTimeout(this._retryTimer);
    this._stopPing();
    this._closePeers(false);
    var ws = this.ws;
    if (ws && ws.readyState === 1) {
      try { ws.send(JSON.stringify({ type: "leave" })); } catch (e) { /* closing */ }
    }
    if (ws) try { ws.close(1000, "left"); } catch (e) { /* closing */ }
  };

  /**
   * The page goes away (reload, closed tab, navigation): close the socket and the
   * peer connections without "leave". The server sees a drop and gives a hall its
   * grace period, so a reload does not cost it the floor or its place in the queue.
   */
  LiveClient.prototype.drop = function (reason) {
    if (this.final && !this.ws) return;
    this.final = true;
    this.dropped = true;
    this.finalReason = this.finalReason || "dropped";
    clearTimeout(this._retryTimer);
    this._stopPing();
    this._closePeers(false);
    var ws = this.ws;
    if (ws) try { ws.close(CLOSE_DROPPED, reason || "dropped"); } catch (e) { /* closing */ }
  };

  LiveClient.prototype._resumePeers = function (welcome, rejoined) {
    for (var name in this.peers) {
      var link = this.peers[name];
      if (link.closed) continue;
      if (link.shouldResume && !link.shouldResume(welcome)) {
        link.close(false);
        continue;
      }
      // The server closed the old peer connections with the old socket (or an
      // offer waits for the socket): offer afresh.
      if (rejoined || link.waiting) link.restart("rejoined", true);
    }
  };

  LiveClient.prototype._closePeers = function (notify) {
    for (var name in this.peers) this.peers[name].close(notify);
  };

  // WebRTC ------------------------------------------------------------------------------------------

  /** A receive-only peer connection for the program feed. */
  LiveClient.prototype.openView = function (options) {
    return this._link("view", options || {});
  };

  /** A send-only peer connection carrying ``stream``'s camera and microphone tracks. */
  LiveClient.prototype.openPublish = function (stream, options) {
    var opts = options || {};
    opts.stream = stream;
    return this._link("publish", opts);
  };

  LiveClient.prototype._link = function (name, options) {
    var old = this.peers[name];
    if (old) old.close(false);
    var link = new NS.PeerLink(this, name, options);
    this.peers[name] = link;
    link.start();
    return link;
  };

  NS.LiveClient = LiveClient;
})();
