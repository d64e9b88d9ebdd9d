"""Every use of aiortc's and aioice's private internals, in one place: this package.

aiortc==1.16.0 and aioice==0.13.0 are pinned exactly in pyproject.toml;
tests/media/test_hooks.py fails loudly when an upgrade moves any name used
here.  Its modules, by what they hook: ``receiving`` (receivers), ``feedback``
(a sender's RTCP and counters), ``negotiation`` (codecs, the DTLS role),
``sending`` (a viewer's sender), ``confine`` (the address rule inside aioice).
Callers use the names below, from ``server.media.hooks``.  What each hook is for:

* :func:`receive_encoded` — a receiver that hands the depacketized encoded
  frames to its track as ``av.Packet`` instead of decoding them (aiortc's
  receiver always decodes), as soon as a frame's last packet arrives
  (aiortc's jitter buffer waits for the next frame to begin: one frame
  interval, 33 ms at 30 fps, added to every hop).
* :func:`on_keyframe_request` — in pack mode an ``RTCRtpSender`` only sets a
  flag its own encoder would read when a viewer sends PLI/FIR; we need the
  request forwarded to the source.
* :func:`on_receiver_report` — the viewer's receiver reports and REMB about
  a sender's stream, with the octets the sender had sent by then
  (:func:`octets_sent`), for the layer policy.
* :func:`send_pli` — ask a publisher for a keyframe.
* :func:`unused_receiver` — a viewer's receivers never receive: their
  bandwidth estimator (1,000 objects each) is dropped.
* :func:`round_trip`, :func:`transport_counts`, :func:`receive_counters` —
  what aiortc already counts of a connection (its round-trip estimate, its
  DTLS transport's packets and bytes, our receiver's sequence and jitter
  counters), read about once a second for the quality board and /metrics.
* :func:`restrict_addresses` — gather only on named addresses, and ignore,
  never answer and never send to any other (``ice.addresses``; tests and
  benchmarks name 127.0.0.1, see "Networks in tests").
* :func:`answer_as_dtls_server` — answer ``a=setup:passive`` to an ``actpass``
  offer, so publishers whose DTLS certificate is RSA (GStreamer) connect.
* :func:`register_h264_profiles` — aiortc knows H.264 only as constrained
  baseline and baseline, packetization-mode 1, level 3.1: studio publishers
  (OBS, GStreamer, FFmpeg) offer main and high profiles, packetization-mode
  0, 1080p; each is added to aiortc's codec table (once, at import).
* :func:`send_encoded` — a viewer's sender that sends the shared payloads of
  each forwarded frame (:func:`rtp_payloads`, :func:`opus_payload`) under the
  viewer's own headers (:mod:`server.media.rtp`), with SRTP and the send
  straight to the ICE pair's socket: aiortc's sender makes a packet object,
  reads the clock and awaits four coroutines per packet per viewer. Each
  video frame goes with its own codec's payload type (VP8 or H.264), so one
  viewer follows the program across sources that send different codecs;
  aiortc's sender packs every frame with the first negotiated codec.
"""

from server.media.hooks.confine import address_rule, restrict_addresses
from server.media.hooks.feedback import (ReceiverReport, ReceiverReports, on_keyframe_request, on_receiver_report,
                                         octets_sent, round_trip, transport_counts)
from server.media.hooks.negotiation import (H264_PROFILES, answer_as_dtls_server, negotiated_video_codecs,
                                            prefer_codecs, register_h264_profiles)
from server.media.hooks.receiving import (MarkerJitterBuffer, receive_counters, receive_encoded, release_at_marker,
                                          remote_media_ssrc, send_pli, unused_receiver)
from server.media.hooks.sending import opus_payload, rtp_payloads, send_encoded

__all__ = [
    "H264_PROFILES", "MarkerJitterBuffer", "ReceiverReport", "ReceiverReports", "address_rule",
    "answer_as_dtls_server", "negotiated_video_codecs", "octets_sent", "on_keyframe_request", "on_receiver_report",
    "opus_payload", "prefer_codecs", "receive_counters", "receive_encoded", "register_h264_profiles",
    "release_at_marker", "remote_media_ssrc", "restrict_addresses", "round_trip", "rtp_payloads", "send_encoded",
    "send_pli", "transport_counts", "unused_receiver",
]
