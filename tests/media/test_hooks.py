"""server/media/hooks/: the private aiortc/aioice names it relies on, and what each hook does.

The name checks fail loudly, naming what moved, when an aiortc or aioice
upgrade moves one of them. The behavioural tests drive each hook on real
peer connections over loopback: a real publisher's frames, a real viewer's
PLI, receiver reports and REMB, real candidates and a real DTLS handshake.
"""

import asyncio
import base64
import inspect
import time
from collections.abc import Callable
from fractions import Fraction
from importlib.metadata import version

import aioice.ice
import aioice.stun
import av
import pytest
from aiortc import RTCIceCandidate, RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCSessionDescription
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceGatherer, RTCIceTransport

from server.media import codecs, hooks
from server.media.codecs import EncodedFrame
from server.media.codecs import is_vp8_keyframe
from server.media.peer import LOOPBACK, IceConfig, new_peer
from tests.media.clients import ColourTrack, new_client, wait_until
from tests.media.studio import Clip, clip, publish_studio


def test_pinned_versions() -> None:
    # pyproject pins these exactly; a different version needs this file reviewed.
    assert version("aiortc") == "1.16.0"
    assert version("aioice") == "0.13.0"


def test_receiver_internals() -> None:
    source = inspect.getsource(RTCRtpReceiver)
    assert "self.__decoder_queue" in source and "self.__decoder_thread" in source
    # The receiver hands (codec, frame) to the queue we replace, and its track has a _queue.
    assert "self.__decoder_queue.put((codec, encoded_frame))" in source
    assert "self._track._queue" in source
    assert hasattr(RTCRtpReceiver, "_send_rtcp_pli")


async def test_sender_internals() -> None:
    assert hasattr(RTCRtpSender, "_send_keyframe")
    # octets_sent() reads what the sender's own reports count.
    assert "self.__octet_count += len(payload)" in inspect.getsource(RTCRtpSender._run_rtp)
    # Pre-encoded packets go through the encoder's pack(), never encode().
    assert "self.__encoder.pack(data)" in inspect.getsource(RTCRtpSender._next_encoded_frame)
    assert hasattr(Vp8Encoder, "pack") and hasattr(OpusEncoder, "pack")
    # send_encoded replaces the RTP loop and retransmission: the state it keeps up to date, and the
    # packetizers it calls, as aiortc's own loop does.
    run_rtp = inspect.getsource(RTCRtpSender._run_rtp)
    for name in ("__rtp_started.set()", "__rtp_exited.set()", "__rtp_history[", "__rtp_header_extensions_map",
                 "__ntp_timestamp =", "__rtp_timestamp =", "__packet_count += 1", "self.__mid",
                 "self.transport._send_rtp(packet_bytes)"):
        assert name in run_rtp, name
    assert "self.__rtp_task = asyncio.ensure_future(self._run_rtp(parameters.codecs[0]))" in inspect.getsource(
        RTCRtpSender.send)
    retransmit = inspect.getsource(RTCRtpSender._retransmit)
    assert "self.__rtx_sequence_number" in retransmit and "self._rtx_ssrc" in retransmit
    # ...and goes past the DTLS transport's _send_rtp, straight to the nominated pair's socket: what that
    # path does (the state check, SRTP, the counters) and the chain it stands for (ICE transport, aioice's
    # connection, its nominated pair, the plain UDP protocol's sendto).
    from aiortc import rtcdtlstransport
    from aiortc.rtp import HeaderExtensionsMap
    send_rtp = inspect.getsource(RTCDtlsTransport._send_rtp)
    for name in ("if self._state != State.CONNECTED:", "data = self._tx_srtp.protect(data)",
                 "await self.transport._send(data)", "self.__tx_bytes += len(data)", "self.__tx_packets += 1"):
        assert name in send_rtp, name
    assert rtcdtlstransport.State.CONNECTED
    assert "self._send = self._connection.send" in inspect.getsource(RTCIceTransport)
    assert "await self.sendto(data, 1)" in inspect.getsource(aioice.ice.Connection.send)
    assert "active_pair = self._nominated.get(component)" in inspect.getsource(aioice.ice.Connection.sendto)
    assert "await active_pair.protocol.send_data(data, active_pair.remote_addr)" in inspect.getsource(
        aioice.ice.Connection.sendto)
    module = inspect.getsource(aioice.ice)
    assert "    async def send_data(self, data: bytes, addr: tuple[str, int]) -> None:\n" \
        "        self.transport.sendto(data, addr)\n" in module
    assert "self.__ids = HeaderExtensions()" in inspect.getsource(HeaderExtensionsMap)
    assert {"mid", "abs_send_time"} <= set(vars(HeaderExtensionsMap()._HeaderExtensionsMap__ids))
    packet = av.Packet(b"opus")
    assert packet.opaque is None  # opus_payload keeps the shared bytes there
    from aiortc.codecs.h264 import H264Encoder
    assert isinstance(inspect.getattr_static(H264Encoder, "_split_bitstream"), staticmethod)
    assert isinstance(inspect.getattr_static(H264Encoder, "_packetize"), classmethod)
    assert isinstance(inspect.getattr_static(Vp8Encoder, "_packetize"), classmethod)
    from aiortc import RTCCertificate
    sender = RTCRtpSender("video", RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()),
                                                    [RTCCertificate.generateCertificate()]))
    for name in ("rtp_history", "rtp_header_extensions_map", "mid", "octet_count", "packet_count",
                 "ntp_timestamp", "rtp_timestamp", "rtx_sequence_number", "track", "rtp_started", "rtp_exited"):
        assert hasattr(sender, "_RTCRtpSender__" + name), name


def test_h264_profiles_are_in_aiortcs_codec_table() -> None:
    import aiortc.codecs
    h264 = [c for c in aiortc.codecs.CODECS["video"] if c.mimeType == "video/H264"]
    assert {(c.parameters["profile-level-id"][:4], c.parameters["packetization-mode"]) for c in h264} == {
        (p[:4], m) for p in hooks.H264_PROFILES for m in ("0", "1")}
    assert max(c.payloadType for c in aiortc.codecs.CODECS["video"]) <= 127


def test_ice_and_dtls_internals() -> None:
    connection = aioice.ice.Connection
    # restrict_addresses wraps these and reads a connection's rule from its receiver.
    assert list(inspect.signature(connection.get_component_candidates).parameters) == [
        "self", "component", "addresses", "timeout"]
    # ...and reads the connection's transport policy (a relay-only one gathers no host candidate).
    assert "self._transport_policy = transport_policy" in inspect.getsource(connection.__init__)
    assert hasattr(connection, "add_remote_candidate") and hasattr(connection, "request_received")
    assert "self.receiver = receiver" in inspect.getsource(aioice.ice.StunProtocol.__init__)
    assert hasattr(aioice.ice.StunProtocol, "send_stun") and hasattr(aioice.ice.StunProtocol, "send_data")
    # ...and tags each new ICE connection of one peer connection through its transport factory.
    assert hasattr(RTCPeerConnection, "_RTCPeerConnection__createDtlsTransport")
    assert "self._connection = Connection(" in inspect.getsource(RTCIceGatherer)
    assert hasattr(RTCIceTransport, "addRemoteCandidate")
    assert hasattr(RTCDtlsTransport, "_set_role")
    # An answer takes the DTLS role from the transport when it is set (answer_as_dtls_server).
    assert 'dtlsTransport._role == "auto"' in inspect.getsource(RTCPeerConnection)


def test_vp8_keyframe_bit() -> None:
    assert is_vp8_keyframe(bytes([0x10, 0x02]))  # P bit clear: keyframe
    assert not is_vp8_keyframe(bytes([0x11, 0x02]))
    assert not is_vp8_keyframe(b"")


def _rtp(sequence: int, timestamp: int, marker: bool, data: bytes) -> "RtpPacket":
    from aiortc.rtp import RtpPacket

    packet = RtpPacket(payload_type=96, sequence_number=sequence, timestamp=timestamp, marker=marker)
    packet._data = data  # what the receiver's depayloader sets
    return packet


def test_the_video_jitter_buffer_releases_a_frame_at_its_marker() -> None:
    from server.media.hooks import MarkerJitterBuffer

    buffer = MarkerJitterBuffer(capacity=512, is_video=True)
    assert buffer.add(_rtp(100, 3000, False, b"a"))[1] is None
    _, frame = buffer.add(_rtp(101, 3000, True, b"b"))
    assert frame is not None and frame.data == b"ab" and frame.timestamp == 3000  # no wait for the next frame
    # A frame whose marker was lost is released when the next one begins.
    assert buffer.add(_rtp(102, 6000, False, b"c"))[1] is None
    _, late = buffer.add(_rtp(103, 9000, False, b"d"))
    assert late is not None and late.data == b"c" and late.timestamp == 6000
    # A gap holds the frame back until the missing packet arrives.
    assert buffer.add(_rtp(105, 9000, True, b"f"))[1] is None
    _, healed = buffer.add(_rtp(104, 9000, False, b"e"))
    assert healed is not None and healed.data == b"def"


def test_the_receiver_internals_the_jitter_buffer_hook_needs() -> None:
    from aiortc.jitterbuffer import JitterBuffer

    source = inspect.getsource(RTCRtpReceiver)
    assert "self.__jitter_buffer = JitterBuffer(capacity=512, is_video=True)" in source
    assert "self.__jitter_buffer.add(packet)" in source
    assert {"_packets", "_origin", "_capacity"} <= set(vars(JitterBuffer(capacity=16)))


# Behaviour, on real peer connections over loopback ---------------------------------------------


async def _connect(offerer: RTCPeerConnection, answerer: RTCPeerConnection,
                   before_answer: Callable[[], None] = lambda: None) -> str:
    """Offer/answer between two local peers; returns the answer's SDP."""
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    before_answer()
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)
    return answerer.localDescription.sdp


async def test_receive_encoded_yields_vp8_packets_with_keyframe_flags_from_a_real_publisher() -> None:
    hub, publisher = new_peer(IceConfig(addresses=LOOPBACK)), new_client()
    video = hub.addTransceiver("video", direction="recvonly")
    hooks.prefer_codecs(video)
    hooks.receive_encoded(video.receiver)
    publisher.addTransceiver(ColourTrack((200, 30, 30)), direction="sendonly")
    try:
        await _connect(publisher, hub)
        track = video.receiver.track
        packets = [await asyncio.wait_for(track.recv(), 10) for _ in range(20)]
        assert all(isinstance(p, EncodedFrame) and p.codec == "vp8" for p in packets)
        assert packets[0].is_keyframe and not all(p.is_keyframe for p in packets)
        assert [p.is_keyframe for p in packets] == [is_vp8_keyframe(bytes(p)) for p in packets]
        assert all(p.time_base == Fraction(1, 90000) for p in packets)
        assert [p.pts for p in packets] == sorted(p.pts for p in packets)
        # The frames decode: they are whole VP8 frames, not RTP payloads.
        decoder = av.CodecContext.create("vp8", "r")
        frames = [f for p in packets for f in decoder.decode(av.Packet(bytes(p)))]
        assert frames and (frames[0].width, frames[0].height) == (320, 240)
    finally:
        await publisher.close()
        await hub.close()


async def _receive_studio(studio_clip: Clip, fmtp: str | None, count: int) -> tuple[list[EncodedFrame], str]:
    hub = new_peer(IceConfig(addresses=LOOPBACK))
    video = hub.addTransceiver("video", direction="recvonly")
    hooks.prefer_codecs(video)
    hooks.receive_encoded(video.receiver, hub)

    async def answer(offer: str) -> str:
        await hub.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await hub.setLocalDescription(await hub.createAnswer())
        return hub.localDescription.sdp

    # The studio offers audio too: the hub takes it on a transceiver of its own.
    hub.addTransceiver("audio", direction="recvonly")
    studio = await publish_studio(answer, studio_clip, 440, fmtp=fmtp)
    try:
        frames = [await asyncio.wait_for(video.receiver.track.recv(), 10) for _ in range(count)]
        return frames, studio.answer
    finally:
        await studio.close()
        await hub.close()


@pytest.mark.parametrize("profile,fmtp", [
    ("high", None),
    ("main", "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d0028"),
    ("baseline", "packetization-mode=0;profile-level-id=42e01f"),
    ("high", "packetization-mode=1;profile-level-id=640032"),
])
async def test_receive_encoded_takes_h264_in_every_studio_profile_and_packetization_mode(
        profile: str, fmtp: str | None) -> None:
    frames, answer = await _receive_studio(clip((200, 30, 30), (640, 360), profile=profile, seconds=2), fmtp, 70)
    assert "H264/90000" in answer and "VP8" not in answer.split("m=video")[1].split("m=audio")[0]
    assert all(isinstance(f, EncodedFrame) and f.codec == "h264" for f in frames)
    # A keyframe every 2 s (60 frames), each an IDR with its SPS and PPS, and nothing else flagged.
    keys = [i for i, f in enumerate(frames) if f.is_keyframe]
    assert keys == [i for i, f in enumerate(frames) if codecs.is_h264_keyframe(f.data)]
    assert len(keys) >= 2 and keys[1] - keys[0] == 60
    for index in keys:
        info = codecs.parse_sps(next(u for u in codecs.nal_units(frames[index].data) if codecs.nal_type(u) == 7))
        assert (info.width, info.height) == (640, 360) and info.profile.endswith(profile)
    # Decoded from the second keyframe on (as a viewer joining then would): every frame, the right colour.
    decoder = av.CodecContext.create("h264", "r")
    pictures = [p for f in frames[keys[1]:] for p in decoder.decode(av.Packet(f.data))]
    assert len(pictures) == len(frames) - keys[1]
    assert all(abs(int(c) - e) < 40 for c, e in zip(pictures[0].to_ndarray(format="rgb24")[180, 320],
                                                    (200, 30, 30), strict=True))


async def test_receive_encoded_puts_the_sdps_parameter_sets_before_every_idr_that_lacks_them() -> None:
    # SPS and PPS only in the SDP (and before the very first IDR): a viewer joining at the
    # second keyframe could not decode without them.
    studio_clip = clip((30, 30, 200), (320, 240), seconds=2, parameter_sets_in_band=False)
    sets = codecs.nal_units(studio_clip.frames[0][0])[:2]
    sprop = ",".join(base64.b64encode(unit).decode() for unit in sets)
    frames, _ = await _receive_studio(
        studio_clip, f"packetization-mode=1;profile-level-id=64001f;sprop-parameter-sets={sprop}", 70)
    keys = [i for i, f in enumerate(frames) if f.is_keyframe]
    assert len(keys) >= 2
    for index in keys:
        types = [codecs.nal_type(u) for u in codecs.nal_units(frames[index].data)]
        assert types.index(7) < types.index(8) < types.index(5)
    decoder = av.CodecContext.create("h264", "r")
    assert [p for f in frames[keys[1]:] for p in decoder.decode(av.Packet(f.data))]


async def test_on_keyframe_request_fires_on_a_real_viewers_pli() -> None:
    hub, viewer = new_peer(IceConfig(addresses=LOOPBACK)), new_client()
    sent = hub.addTransceiver(ColourTrack((30, 200, 60)), direction="sendonly")
    viewer.addTransceiver("video", direction="recvonly")
    asked: list[float] = []
    hooks.on_keyframe_request(sent.sender, lambda: asked.append(time.monotonic()))
    try:
        await _connect(viewer, hub)
        receiver = viewer.getTransceivers()[0].receiver
        await asyncio.wait_for(receiver.track.recv(), 10)
        before = len(asked)
        await hooks.send_pli(receiver, sent.sender._ssrc)
        await wait_until(lambda: len(asked) > before, timeout=5)
    finally:
        await viewer.close()
        await hub.close()


class Listener:
    def __init__(self) -> None:
        self.reports: list[hooks.ReceiverReport] = []
        self.estimates: list[tuple[int, int]] = []

    def report(self, report: hooks.ReceiverReport) -> None:
        self.reports.append(report)

    def bandwidth(self, bits_per_second: int, octets_sent: int) -> None:
        self.estimates.append((bits_per_second, octets_sent))


async def test_on_receiver_report_delivers_a_real_viewers_loss_and_remb() -> None:
    hub, viewer = new_peer(IceConfig(addresses=LOOPBACK)), new_client()
    sent = hub.addTransceiver(ColourTrack((30, 30, 200)), direction="sendonly")
    viewer.addTransceiver("video", direction="recvonly")
    listener = Listener()
    hooks.on_receiver_report(sent.sender, listener)
    try:
        await _connect(viewer, hub)
        receiver = viewer.getTransceivers()[0].receiver
        await asyncio.wait_for(receiver.track.recv(), 10)
        await wait_until(lambda: len(listener.reports) >= 2 and listener.estimates, timeout=10)
        clean = listener.reports[-1]
        assert clean.packets_lost == 0 and clean.fraction_lost == 0
        assert clean.highest_sequence > 0 and clean.octets_sent > 0
        bits, octets = listener.estimates[-1]
        assert bits > 0 and 0 < octets <= hooks.octets_sent(sent.sender)
        # Every third packet vanishes on the viewer's side: its reports say so.
        transport = receiver.transport
        handle, seen = transport._handle_rtp_data, [0]

        async def drop_some(data: bytes, arrival_time_ms: int) -> None:
            seen[0] += 1
            if seen[0] % 3:
                await handle(data, arrival_time_ms)

        transport._handle_rtp_data = drop_some
        await wait_until(lambda: listener.reports[-1].packets_lost > 0, timeout=10)
        await wait_until(lambda: listener.reports[-1].fraction_lost > 0.1, timeout=10)
        assert listener.reports[-1].octets_sent >= clean.octets_sent
    finally:
        await viewer.close()
        await hub.close()


def _candidate(ip: str, port: int = 9) -> RTCIceCandidate:
    return RTCIceCandidate(component=1, foundation="x", ip=ip, port=port, priority=1, protocol="udp", type="host",
                           sdpMid="0", sdpMLineIndex=0)


async def test_an_address_rule_gathers_only_the_named_addresses_and_refuses_other_candidates() -> None:
    pc = new_peer(IceConfig(addresses=("127.0.0.2",)))
    pc.addTransceiver("video", direction="recvonly")
    sends: list[tuple[str, int]] = []
    try:
        await pc.setLocalDescription(await pc.createOffer())
        candidates = [line.split()[4] for line in pc.localDescription.sdp.splitlines()
                      if line.startswith("a=candidate:")]
        # 127.0.0.2 is not among what aioice gathers by itself (it skips loopback):
        # named, it is gathered, and nothing else is.
        assert candidates and set(candidates) == {"127.0.0.2"}
        ice = pc.getTransceivers()[0].receiver.transport.transport
        for ip in ("127.0.0.1", "::1", "127.0.0.2"):
            await pc.addIceCandidate(_candidate(ip))
        assert [c.ip for c in ice.getRemoteCandidates()] == ["127.0.0.2"]
        assert hooks.address_rule(ice._connection).allows("127.0.0.2")
        assert not hooks.address_rule(ice._connection).allows("127.0.0.1")
        assert not hooks.address_rule(ice._connection).allows("bridge.local")
        # The send guard: nothing leaves for an address the rule does not name.
        protocol = ice._connection._protocols[0]
        transport_sendto = protocol.transport.sendto
        protocol.transport.sendto = lambda data, addr: sends.append(addr)  # type: ignore[method-assign]
        await protocol.send_data(b"x", ("127.0.0.1", 9))
        protocol.send_stun(aioice.stun.Message(aioice.stun.Method.BINDING, aioice.stun.Class.REQUEST),
                           ("127.0.0.3", 9))
        await protocol.send_data(b"x", ("127.0.0.2", 9))
        protocol.transport.sendto = transport_sendto  # type: ignore[method-assign]
        assert sends == [("127.0.0.2", 9)]
    finally:
        await pc.close()


INSIDE = ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1", "10.1.2.3", "172.16.0.9", "192.168.1.20",
          "169.254.169.254", "fe80::1", "fd00::5", "100.64.0.7", "0.0.0.0", "224.0.0.251", "198.18.7.1",
          "bridge.local", "metadata.google.internal"]
PUBLIC = ["203.0.113.0", "8.8.8.8", "2001:4860:4860::8888"]


@pytest.mark.parametrize("allowed", [(), ("10.0.0.0/8", "fd00::/8")])
async def test_unconfined_remote_candidates_that_point_inside_are_refused(allowed: tuple[str, ...]) -> None:
    """Production (no ice.addresses): a member's candidate must not make the server probe its own network."""
    import ipaddress

    networks = tuple(ipaddress.ip_network(n) for n in allowed)
    pc = new_peer(IceConfig(allowed_networks=networks))
    pc.addTransceiver("video", direction="recvonly")
    ice = pc.getTransceivers()[0].receiver.transport.transport
    rule = hooks.address_rule(ice._connection)
    sends: list[tuple[str, int]] = []
    try:
        # Gathering binds sockets on this machine's interfaces and sends nothing (no STUN server).
        await pc.setLocalDescription(await pc.createOffer())
        for host in INSIDE + PUBLIC:
            if not host.endswith((".local", ".internal")):
                await pc.addIceCandidate(_candidate(host))
        permitted = {"10.1.2.3", "fd00::5"} if allowed else set()
        # 203.0.113.0 is documentation space (not global): refused like the others.
        assert {c.ip for c in ice.getRemoteCandidates()} == {"8.8.8.8", "2001:4860:4860::8888"} | permitted
        # An mDNS name is only followed where private networks are allowed; no other name ever.
        expected = permitted | ({"bridge.local"} if allowed else set()) | {"8.8.8.8", "2001:4860:4860::8888"}
        assert {h for h in INSIDE + PUBLIC if rule.allows(h)} == expected
        # The send guard refuses too, whatever the agent decided.
        protocol = ice._connection._protocols[0]
        transport_sendto = protocol.transport.sendto
        protocol.transport.sendto = lambda data, addr: sends.append(addr)  # type: ignore[method-assign]
        for host in ("127.0.0.1", "169.254.169.254", "8.8.8.8"):
            protocol.send_stun(aioice.stun.Message(aioice.stun.Method.BINDING, aioice.stun.Class.REQUEST),
                               (host, 9))
        protocol.transport.sendto = transport_sendto  # type: ignore[method-assign]
        assert sends == [("8.8.8.8", 9)]
    finally:
        await pc.close()


async def test_peers_under_different_rules_never_connect_and_under_the_same_rule_do() -> None:
    # A connection's own rule wins over the process's (tests/media/clients.py: 127.0.0.1).
    apart_hub, apart_viewer = new_peer(IceConfig(addresses=("127.0.0.1",))), new_peer(IceConfig(addresses=("127.0.0.2",)))
    together_hub = new_peer(IceConfig(addresses=("127.0.0.1", "127.0.0.2")))
    together_viewer = new_peer(IceConfig(addresses=("127.0.0.2", "127.0.0.1")))
    pairs = [(apart_viewer, apart_hub), (together_viewer, together_hub)]
    for viewer, hub in pairs:
        hub.addTransceiver(ColourTrack((10, 10, 10)), direction="sendonly")
        viewer.addTransceiver("video", direction="recvonly")
    try:
        for viewer, hub in pairs:
            await _connect(viewer, hub)
        await wait_until(lambda: together_hub.connectionState == "connected", timeout=10)
        # The apart pair has had as long and more: the viewer's checks arrived and were dropped.
        await asyncio.sleep(3)
        assert apart_hub.connectionState != "connected" and apart_viewer.connectionState != "connected"
        remote = apart_hub.getTransceivers()[0].sender.transport.transport.getRemoteCandidates()
        assert remote == []  # its 127.0.0.2 refused, and no peer-reflexive one learned from its checks
    finally:
        for viewer, hub in pairs:
            await viewer.close()
            await hub.close()


async def test_answer_as_dtls_server_answers_passive_to_actpass_and_connects() -> None:
    hub, publisher = new_peer(IceConfig(addresses=LOOPBACK)), new_client()
    video = hub.addTransceiver("video", direction="recvonly")
    publisher.addTransceiver(ColourTrack((90, 90, 90)), direction="sendonly")
    try:
        await publisher.setLocalDescription(await publisher.createOffer())
        assert "a=setup:actpass" in publisher.localDescription.sdp
        answer = await _connect(publisher, hub, before_answer=lambda: hooks.answer_as_dtls_server(hub))
        assert "a=setup:passive" in answer and "a=setup:active" not in answer
        await wait_until(lambda: hub.connectionState == "connected" and publisher.connectionState == "connected",
                         timeout=10)
        assert video.receiver.transport._role == "server"
        assert publisher.getTransceivers()[0].sender.transport._role == "client"
    finally:
        await publisher.close()
        await hub.close()


async def test_counters_the_quality_board_reads() -> None:
    """round_trip, transport_counts and receive_counters read aiortc's own counters by name."""
    from aiortc import RTCCertificate
    from aiortc.rtcrtpreceiver import RTCRtpReceiver, StreamStatistics
    dtls = RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()])
    for name in ("tx_packets", "tx_bytes", "rx_packets", "rx_bytes"):
        assert isinstance(getattr(dtls, "_RTCDtlsTransport__" + name), int), name
    sender = RTCRtpSender("video", dtls)
    assert hooks.round_trip(sender) is None
    assert "self.__rtt = rtt" in inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    receiver = RTCRtpReceiver("video", dtls)
    assert hooks.receive_counters(receiver) is None  # nothing received yet
    stats = StreamStatistics(90000)
    for name in ("max_seq", "packets_received", "_clockrate"):
        assert hasattr(stats, name), name
    assert isinstance(inspect.getattr_static(StreamStatistics, "packets_expected"), property)
    assert isinstance(inspect.getattr_static(StreamStatistics, "jitter"), property)
    assert "self.__remote_streams[packet.ssrc].add(packet)" in inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    # unused_receiver: the estimator is optional where aiortc reads it.
    assert receiver._RTCRtpReceiver__remote_bitrate_estimator is not None
    hooks.unused_receiver(receiver)
    assert receiver._RTCRtpReceiver__remote_bitrate_estimator is None
    assert "if self.__remote_bitrate_estimator is not None:" in inspect.getsource(RTCRtpReceiver._handle_rtp_packet)


def _opus_tone(seconds: float, frequency: float = 440.0) -> list[av.Packet]:
    import numpy as np

    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "stereo", "s16"
    packets: list[av.Packet] = []
    for tick in range(int(seconds * 50)):
        t = (np.arange(960) + tick * 960) / 48000
        samples = (np.sin(2 * np.pi * frequency * t) * 12000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(samples, 2).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = 48000, tick * 960, Fraction(1, 48000)
        packets += encoder.encode(frame)
    return packets


async def test_send_encoded_sends_shared_payloads_under_each_viewers_own_headers_and_repairs_a_loss() -> None:
    """A viewer's packets from send_encoded: aiortc's receiver decodes them, each carries the viewer's own
    SSRC, numbering and mid around the shared payloads, and a lost packet comes back as RTX."""
    from aiortc.rtp import RtpPacket

    from server.media.fanout import ForwardTrack

    hub, viewer = new_peer(IceConfig(addresses=LOOPBACK)), new_client()
    video_track, audio_track = ForwardTrack("video"), ForwardTrack("audio")
    senders = []
    for track in (video_track, audio_track):
        transceiver = hub.addTransceiver(track, direction="sendonly")
        hooks.prefer_codecs(transceiver)
        hooks.send_encoded(transceiver)
        senders.append(transceiver.sender)
    video_sender, audio_sender = senders
    viewer.addTransceiver("video", direction="recvonly")
    viewer.addTransceiver("audio", direction="recvonly")
    seen: dict[str, list[RtpPacket]] = {"video": [], "audio": []}
    for transceiver in viewer.getTransceivers():
        receiver, kind = transceiver.receiver, transceiver.kind
        handle = receiver._handle_rtp_packet

        async def record(packet: RtpPacket, arrival_time_ms: int, handle=handle, kind=kind) -> None:
            seen[kind].append(packet)
            await handle(packet, arrival_time_ms)

        receiver._handle_rtp_packet = record
    pictures = clip(None, (320, 240), codec="vp8", seconds=2, gop_seconds=2)
    frames = [EncodedFrame("vp8", data, index * 3000, keyframe, picture_id=index)
              for index, (data, keyframe) in enumerate(pictures.frames)]
    tone = _opus_tone(2.0)
    try:
        await _connect(viewer, hub)
        dtls = viewer.getTransceivers()[0].receiver.transport
        handle_data, dropped = dtls._handle_rtp_data, []

        async def lose_one(data: bytes, arrival_time_ms: int) -> None:
            # The 20th video packet (not a frame's first) never arrives: the viewer asks for it again.
            if (not dropped and int.from_bytes(data[8:12], "big") == video_sender._ssrc
                    and len(seen["video"]) >= 20 and not data[1] & 0x80):
                dropped.append(int.from_bytes(data[2:4], "big"))
                return
            await handle_data(data, arrival_time_ms)

        dtls._handle_rtp_data = lose_one
        await wait_until(lambda: hub.connectionState == "connected")
        direct = 0
        for index, frame in enumerate(frames):
            video_track.push(frame)
            # Sent in the push itself: nothing waits in the queue for the sender's task.
            direct += video_track.deliver is not None and not video_track._queue
            if index % 3 == 0:  # 3 video frames of 33 ms, 5 Opus packets of 20 ms
                for packet in tone[index // 3 * 5:index // 3 * 5 + 5]:
                    audio_track.push(packet)
            await asyncio.sleep(1 / 30)
        # The sender took them as they were pushed (deliver), in the pushing call: nothing waited in a queue.
        assert video_track.deliver is not None and audio_track.deliver is not None
        assert video_track.sent == len(frames) and direct >= len(frames) - 5, direct
        receivers = {t.kind: t.receiver for t in viewer.getTransceivers()}
        picture = await asyncio.wait_for(receivers["video"].track.recv(), 10)
        assert (picture.width, picture.height) == (320, 240)
        sound = await asyncio.wait_for(receivers["audio"].track.recv(), 10)
        assert sound.sample_rate == 48000
        await wait_until(lambda: len(seen["video"]) > 0 and dropped and any(
            p.ssrc == video_sender._rtx_ssrc for p in seen["video"]), timeout=10)
    finally:
        await viewer.close()
        await hub.close()
    video = [p for p in seen["video"] if p.ssrc == video_sender._ssrc]
    repaired = [p for p in seen["video"] if p.ssrc == video_sender._rtx_ssrc]
    # Every frame's payloads, made once (rtp_payloads) and sent whole, the marker on each frame's last.
    sent = [payload for frame in frames for payload in hooks.rtp_payloads(frame) or []]
    got = sorted(video + [RtpPacket(sequence_number=int.from_bytes(p.payload[:2], "big"), payload=p.payload[2:])
                          for p in repaired], key=lambda p: p.sequence_number)
    assert len(video) == len(sent) - 1 and dropped
    assert [p.payload for p in got][:len(sent)] == sent[:len(got)] and len(got) >= len(sent)
    numbers = [p.sequence_number for p in video]
    assert all((b - a) % 65536 in (1, 2) for a, b in zip(numbers, numbers[1:], strict=False))
    assert sum(p.marker for p in video) == len(frames)
    assert {p.extensions.mid for p in video} == {"0"} and all(p.extensions.abs_send_time for p in video)
    assert len({p.timestamp for p in video}) == len(frames)
    audio = [p for p in seen["audio"] if p.ssrc == audio_sender._ssrc]
    assert [p.payload for p in audio] == [bytes(packet) for packet in tone[:len(audio)]] and len(audio) >= 95
    assert {p.extensions.mid for p in audio} == {"1"}
    assert [(b.timestamp - a.timestamp) % 2**32 for a, b in zip(audio, audio[1:], strict=False)] == [960] * (
        len(audio) - 1)
    # The counters the quality board and the sender reports read, kept by the fast path.
    packets_sent, bytes_sent, _, _ = hooks.transport_counts(hub)
    assert packets_sent >= len(video) + len(audio) and bytes_sent > sum(len(p.payload) for p in video)
    assert hooks.octets_sent(video_sender) == sum(len(payload) for payload in sent)
