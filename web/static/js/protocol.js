/* Bridgecast live protocol (docs/protocol.md), apart from any page.
 *
 * window.Bridgecast.LiveClient: one websocket per endpoint; join, dispatch
 * server messages by type, reconnect with backoff, re-join and re-offer the
 * peer connections after a drop.
 * window.Bridgecast.PeerLink: one RTCPeerConnection ("view" or "publish")
 * offered over the socket and answered by the server; rebuilt and re-offered
 * when it fails (the server, aiortc, has no ICE restart).
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
  var GATHER_TIMEOUT = 2000;      // ms to wait for ICE gathering before offering
  var ANSWER_TIMEOUT = 10000;     // ms to wait for the server's answer
  var DISCONNECTED_GRACE = 5000;  // ms "disconnected" before rebuilding a peer connection
  var CLOSE_FINAL = { 1000: "closed", 4003: "removed" };
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
    if (type === "answer") {
      // The server answers offers in the order it got them.
      var head = this._offers.shift();
      if (head && head.link.name === message.pc) head.link._answer(head.generation, message.sdp);
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
    var link = new PeerLink(this, name, options);
    this.peers[name] = link;
    link.start();
    return link;
  };

  // ---------------------------------------------------------------------------------------------
  // PeerLink

  function preferCodec(transceiver, kind, mime) {
    if (!transceiver.setCodecPreferences || !window.RTCRtpReceiver || !RTCRtpReceiver.getCapabilities) return;
    try {
      var caps = RTCRtpReceiver.getCapabilities(kind);
      if (!caps || !caps.codecs) return;
      var first = caps.codecs.filter(function (c) { return c.mimeType.toLowerCase() === mime; });
      if (!first.length) return;
      var rest = caps.codecs.filter(function (c) { return c.mimeType.toLowerCase() !== mime; });
      transceiver.setCodecPreferences(first.concat(rest));
    } catch (e) { /* keep the browser's order */ }
  }

  function waitForGathering(pc, timeout) {
    return new Promise(function (resolve) {
      if (pc.iceGatheringState === "complete") { resolve(); return; }
      var timer = setTimeout(done, timeout);
      function check() { if (pc.iceGatheringState === "complete") done(); }
      function done() {
        clearTimeout(timer);
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      }
      pc.addEventListener("icegatheringstatechange", check);
    });
  }

  /**
   * options: stream (publish), onTrack(MediaStream), onState(state, link),
   * shouldResume(welcome) -> bool (after a reconnect), video: <video> to attach the stream to.
   */
  function PeerLink(client, name, options) {
    this.client = client;
    this.name = name;
    this.options = options || {};
    this.stream = this.options.stream || null;
    this.shouldResume = this.options.shouldResume || null;
    this.pc = null;
    this.generation = 0;
    this.expecting = null;      // generation whose answer we wait for
    this.closed = false;
    this.waiting = false;       // an offer is due once the socket is joined
    this.failures = 0;
    this.state = "new";
    this.remote = null;         // MediaStream received (view)
    this._timers = {};
    this._rebuilding = false;
  }

  PeerLink.prototype._timer = function (name, fn, ms) {
    clearTimeout(this._timers[name]);
    this._timers[name] = fn ? setTimeout(fn, ms) : null;
  };

  PeerLink.prototype._setState = function (state) {
    if (this.state === state) return;
    this.state = state;
    if (this.options.onState) {
      try { this.options.onState(state, this); } catch (e) { console.error(e); }
    }
  };

  PeerLink.prototype.start = function () {
    if (this.closed) return;
    if (!this.client.joined) {
      this.waiting = true;
      this._setState("waiting");
      return;
    }
    this.waiting = false;
    this._build();
  };

  PeerLink.prototype._build = function () {
    var self = this;
    var generation = ++this.generation;
    if (this.pc) this._dispose(this.pc);
    var pc = new RTCPeerConnection({ iceServers: this.client.config.iceServers || [], bundlePolicy: "max-bundle" });
    this.pc = pc;
    this._setState("connecting");

    if (this.name === "view") {
      var stream = new MediaStream();
      this.remote = stream;
      preferCodec(pc.addTransceiver("video", { direction: "recvonly" }), "video", "video/vp8");
      preferCodec(pc.addTransceiver("audio", { direction: "recvonly" }), "audio", "audio/opus");
      pc.ontrack = function (event) {
        if (pc !== self.pc) return;
        if (stream.getTracks().indexOf(event.track) < 0) stream.addTrack(event.track);
        if (self.options.video) {
          if (self.options.video.srcObject !== stream) self.options.video.srcObject = stream;
        }
        if (self.options.onTrack) self.options.onTrack(stream, event.track);
      };
    } else {
      var media = this.stream;
      var video = media ? media.getVideoTracks()[0] : null;
      var audio = media ? media.getAudioTracks()[0] : null;
      var streams = media ? [media] : [];
      var vt = video ? pc.addTransceiver(video, { direction: "sendonly", streams: streams })
                     : pc.addTransceiver("video", { direction: "sendonly" });
      var at = audio ? pc.addTransceiver(audio, { direction: "sendonly", streams: streams })
                     : pc.addTransceiver("audio", { direction: "sendonly" });
      preferCodec(vt, "video", "video/vp8");
      preferCodec(at, "audio", "audio/opus");
      this.videoSender = vt.sender;
      this.audioSender = at.sender;
    }

    pc.onconnectionstatechange = function () {
      if (pc !== self.pc) return;
      var state = pc.connectionState;
      if (state === "connected") {
        self.failures = 0;
        self._timer("grace", null);
        self._setState("connected");
      } else if (state === "failed") {
        self._setState("failed");
        self.restart("failed");
      } else if (state === "disconnected") {
        self._setState("disconnected");
        self._timer("grace", function () {
          if (pc === self.pc && pc.connectionState === "disconnected") self.restart("disconnected");
        }, DISCONNECTED_GRACE);
      } else if (state === "connecting") {
        self._setState("connecting");
      }
    };

    pc.createOffer()
      .then(function (offer) { return pc.setLocalDescription(offer); })
      .then(function () { return waitForGathering(pc, GATHER_TIMEOUT); })
      .then(function () {
        if (pc !== self.pc || self.closed || generation !== self.generation) return;
        if (!self.client.joined) { self.waiting = true; self._setState("waiting"); return; }
        if (!self.client.send("offer", { pc: self.name, sdp: pc.localDescription.sdp })) {
          self.waiting = true;
          self._setState("waiting");
          return;
        }
        self.client._offers.push({ link: self, generation: generation });
        self.expecting = generation;
        self._timer("answer", function () {
          if (generation === self.generation && self.expecting === generation) self.restart("no_answer");
        }, ANSWER_TIMEOUT);
      })
      .catch(function (error) {
        console.error("bridgecast: offer for " + self.name + " failed", error);
        if (pc === self.pc) self.restart("offer_error");
      });
  };

  PeerLink.prototype._answer = function (generation, sdp) {
    var pc = this.pc;
    if (!pc || this.closed || generation !== this.generation || pc.signalingState !== "have-local-offer") return;
    this.expecting = null;
    this._timer("answer", null);
    var self = this;
    pc.setRemoteDescription({ type: "answer", sdp: sdp }).catch(function (error) {
      console.error("bridgecast: answer for " + self.name + " refused", error);
      if (pc === self.pc) self.restart("answer_error");
    });
  };

  PeerLink.prototype._offerRefused = function (generation, message) {
    if (this.closed || generation !== this.generation) return;
    this.expecting = null;
    this._timer("answer", null);
    this._setState("refused");
    if (this.options.onRefused) this.options.onRefused(message, this);
    // A hall that no longer holds the floor is told so by floor_revoked; a
    // view refused for another reason is worth another try.
    if (message.code !== "forbidden" && message.code !== "session_closed") this.restart("refused");
  };

  /** Build a new peer connection and offer it again (after a backoff when it keeps failing). */
  PeerLink.prototype.restart = function (reason, immediate) {
    if (this.closed) return;
    var self = this;
    this._timer("answer", null);
    this._timer("grace", null);
    var delay = immediate ? 0 : Math.min(10000, 1000 * Math.pow(2, this.failures));
    if (!immediate) this.failures += 1;
    this._setState("restarting");
    this._timer("restart", function () {
      if (self.closed) return;
      if (!self.client.joined) { self.waiting = true; self._setState("waiting"); return; }
      self.waiting = false;
      self._build();
    }, delay);
  };

  /** Swap the outgoing video (camera <-> screen) without renegotiation. */
  PeerLink.prototype.replaceVideo = function (track) {
    if (this.stream) {
      var old = this.stream.getVideoTracks();
      for (var i = 0; i < old.length; i++) if (old[i] !== track) this.stream.removeTrack(old[i]);
      if (track && this.stream.getVideoTracks().indexOf(track) < 0) this.stream.addTrack(track);
    }
    if (this.videoSender) return this.videoSender.replaceTrack(track);
    return Promise.resolve();
  };

  PeerLink.prototype._dispose = function (pc) {
    pc.ontrack = null;
    pc.onconnectionstatechange = null;
    try { pc.close(); } catch (e) { /* closed */ }
  };

  /** Close for good; notify: tell the server (close_pc). */
  PeerLink.prototype.close = function (notify) {
    if (this.closed) return;
    this.closed = true;
    for (var name in this._timers) clearTimeout(this._timers[name]);
    if (this.pc) this._dispose(this.pc);
    this.pc = null;
    if (notify) this.client.send("close_pc", { pc: this.name });
    if (this.client.peers[this.name] === this) delete this.client.peers[this.name];
    this._setState("closed");
  };

  /** Inbound video bitrate (bit/s), frame rate and loss from getStats, against the previous sample. */
  PeerLink.prototype.inboundStats = function (previous) {
    var pc = this.pc;
    if (!pc) return Promise.resolve(null);
    return pc.getStats().then(function (report) {
      var sample = null;
      var rtt = null;
      report.forEach(function (s) {
        if (s.type === "inbound-rtp" && (s.kind === "video" || s.mediaType === "video")) {
          sample = { at: s.timestamp, bytes: s.bytesReceived || 0, frames: s.framesDecoded || 0,
                     fps: s.framesPerSecond, width: s.frameWidth, height: s.frameHeight,
                     lost: s.packetsLost || 0, packets: s.packetsReceived || 0 };
        } else if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded" &&
                   typeof s.currentRoundTripTime === "number") {
          rtt = s.currentRoundTripTime * 1000;
        }
      });
      if (!sample) return null;
      sample.rtt = rtt;
      if (previous && previous.at && sample.at > previous.at) {
        var seconds = (sample.at - previous.at) / 1000;
        sample.bitrate = Math.max(0, (sample.bytes - previous.bytes) * 8 / seconds);
        if (typeof sample.fps !== "number") sample.fps = Math.max(0, (sample.frames - previous.frames) / seconds);
        var packets = sample.packets - previous.packets;
        var lost = sample.lost - previous.lost;
        sample.loss = packets + lost > 0 ? Math.max(0, lost) / (packets + lost) : 0;
      }
      return sample;
    }).catch(function () { return null; });
  };

  NS.LiveClient = LiveClient;
  NS.PeerLink = PeerLink;
})();
