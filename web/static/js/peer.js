/* Bridgecast live protocol: the peer connections (docs/protocol.md), apart from any page.
 *
 * window.Bridgecast.PeerLink: one RTCPeerConnection ("view" or "publish")
 * offered over a LiveClient's socket (protocol.js) and answered by the
 * server; rebuilt and re-offered when it fails (the server, aiortc, has no
 * ICE restart). A view the hub sends to a relay ("redirect") is offered there
 * by WHEP; if the relay cannot serve it, it is offered at the hub again with
 * "here", and the hub serves it.
 *
 * No user-visible strings and no page here.
 */
(function () {
  "use strict";

  var NS = (window.Bridgecast = window.Bridgecast || {});

  var GATHER_TIMEOUT = 2000;      // ms to wait for ICE gathering before offering
  var ANSWER_TIMEOUT = 10000;     // ms to wait for the server's answer
  var DISCONNECTED_GRACE = 5000;  // ms "disconnected" before rebuilding a peer connection

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
    this._here = false;         // the next offer asks the hub itself to answer (a relay failed it)
    this.servedBy = null;       // "hub", or the origin of the relay serving this view
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
        var offer = { pc: self.name, sdp: pc.localDescription.sdp };
        if (self._here) offer.here = true;
        if (!self.client.send("offer", offer)) {
          self.waiting = true;
          self._setState("waiting");
          return;
        }
        self._here = false;
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
    this.servedBy = "hub";
    var self = this;
    pc.setRemoteDescription({ type: "answer", sdp: sdp }).catch(function (error) {
      console.error("bridgecast: answer for " + self.name + " refused", error);
      if (pc === self.pc) self.restart("answer_error");
    });
  };

  /** The hub sends this offer to a relay (its WHEP URL, with a ticket): the answer comes from there. */
  PeerLink.prototype._redirected = function (generation, url) {
    var pc = this.pc;
    if (!pc || this.closed || generation !== this.generation || pc.signalingState !== "have-local-offer") return;
    this.expecting = null;
    var self = this;
    var current = function () { return pc === self.pc && generation === self.generation && !self.closed; };
    var atHub = function (reason) {
      if (!current()) return;
      self._here = true;
      self.restart(reason, true);
    };
    this._timer("answer", function () { atHub("relay_timeout"); }, ANSWER_TIMEOUT);
    fetch(url, { method: "POST", headers: { "Content-Type": "application/sdp" }, body: pc.localDescription.sdp,
                 mode: "cors", credentials: "omit", cache: "no-store" })
      .then(function (response) {
        if (response.status !== 201) throw new Error("the relay answered " + response.status);
        var location = response.headers.get("Location");
        return response.text().then(function (sdp) {
          var resource = location ? new URL(location, url).href : null;
          if (!current()) { release(resource); return; }
          self._timer("answer", null);
          pc._bridgecastRelayed = resource;
          self.servedBy = new URL(url).origin;
          return pc.setRemoteDescription({ type: "answer", sdp: sdp });
        });
      })
      .catch(function (error) {
        console.warn("bridgecast: the relay did not serve the " + self.name + ": " + error + "; asking the hub");
        atHub("relay_refused");
      });
  };

  /** End a view at a relay (its WHEP resource); nothing waits on it. */
  function release(resource) {
    if (!resource) return;
    try {
      fetch(resource, { method: "DELETE", mode: "cors", credentials: "omit", keepalive: true })
        .catch(function () { /* the relay ends it when its connection fails */ });
    } catch (e) { /* the page is going away */ }
  }

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
    release(pc._bridgecastRelayed);
    pc._bridgecastRelayed = null;
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

  /** Inbound video bitrate (bit/s), frame rate, loss and freezes, and the audio level, from getStats,
      against the previous sample. */
  PeerLink.prototype.inboundStats = function (previous) {
    var pc = this.pc;
    if (!pc) return Promise.resolve(null);
    return pc.getStats().then(function (report) {
      var sample = null;
      var rtt = null;
      var audioLevel = null;
      report.forEach(function (s) {
        if (s.type === "inbound-rtp" && (s.kind === "video" || s.mediaType === "video")) {
          sample = { at: s.timestamp, bytes: s.bytesReceived || 0, frames: s.framesDecoded || 0,
                     fps: s.framesPerSecond, width: s.frameWidth, height: s.frameHeight,
                     lost: s.packetsLost || 0, packets: s.packetsReceived || 0, freezes: s.freezeCount || 0 };
        } else if (s.type === "inbound-rtp" && (s.kind === "audio" || s.mediaType === "audio") &&
                   typeof s.audioLevel === "number") {
          audioLevel = s.audioLevel;
        } else if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded" &&
                   typeof s.currentRoundTripTime === "number") {
          rtt = s.currentRoundTripTime * 1000;
        }
      });
      if (!sample) return null;
      sample.rtt = rtt;
      sample.audioLevel = audioLevel;
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

  NS.PeerLink = PeerLink;
})();
