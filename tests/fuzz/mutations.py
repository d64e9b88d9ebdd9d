"""The SDP and ICE-candidate mutation engine of the fuzzers (tests/fuzz/test_sdp_fuzz.py, bench/sdp_fuzz.py).

It starts from real offers (aiortc's own, made by :func:`real_offers`, and a
browser's as Chrome writes it) and breaks them the ways a broken or hostile
client would: lines deleted, duplicated, swapped or moved to another media
section; numbers made huge, negative or not numbers at all; payload types
out of range (``m=video 9 UDP/TLS/RTP/SAVPF 300``); connection lines that do
not parse (``c=IN X y``); attributes with junk values; candidates that are
not candidates (``1 1 udp 1 1.2.3.4``); line endings changed; the text cut
short; random bytes (also not UTF-8) and flipped bits.

Everything is drawn from a ``random.Random(seed)``: the same seed gives the
same cases, in the same order.

Every address a mutation writes is loopback or a documentation range
(192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, and 1.2.3.4 of the issue):
the fuzzed server runs with ``ice.addresses = 127.0.0.1``, whose address rule
refuses, and never sends to, anything else.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

# A browser's offers, as Chrome writes them (WHEP: receive only; WHIP: send VP8/H.264 and Opus).
CHROME_VIEW = (
    "v=0\r\no=- 4215775240449105457 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
    "a=extmap-allow-mixed\r\na=msid-semantic: WMS\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=ice-ufrag:EsAw\r\na=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y\r\na=ice-options:trickle\r\n"
    "a=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:"
    "52:CE:E6:0F\r\na=setup:actpass\r\na=mid:0\r\na=extmap:1 urn:ietf:params:rtp-hdrext:toffset\r\n"
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=recvonly\r\na=rtcp-mux\r\na=rtcp-rsize\r\n"
    "a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 goog-remb\r\na=rtcp-fb:96 transport-cc\r\na=rtcp-fb:96 ccm fir\r\n"
    "a=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n"
    "a=rtpmap:102 H264/90000\r\na=rtcp-fb:102 nack pli\r\n"
    "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n"
    "a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n"
    "a=candidate:1467250027 1 udp 2122260223 127.0.0.1 46243 typ host generation 0 network-id 1\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=ice-ufrag:EsAw\r\na=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y\r\na=ice-options:trickle\r\n"
    "a=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:"
    "52:CE:E6:0F\r\na=setup:actpass\r\na=mid:1\r\na=extmap:14 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=recvonly\r\na=rtcp-mux\r\n"
    "a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n"
    "a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
)

# Numbers nobody should write, and things that are not numbers.
NUMBERS = ["0", "-1", "65536", "4294967296", "18446744073709551616", "9" * 60, "1e9", "NaN", "x", "", "1.5",
           "-0", "\u0663", "\u00b2", "0x10", " 1", "+1", "127", "128", "300", "-2147483649"]
# Lines a client should never send, one of them inserted somewhere.
BAD_LINES = [
    "m=video 9 UDP/TLS/RTP/SAVPF 300", "m=video 9 UDP/TLS/RTP/SAVPF -1", "m=video 9 UDP/TLS/RTP/SAVPF abc",
    "m=video 9 UDP/TLS/RTP/SAVPF", "m=video", "m=", "m=video x UDP/TLS/RTP/SAVPF 96", "m=video 9 RTP/AVP 96",
    "m=audio 70000 UDP/TLS/RTP/SAVPF 111", "m=video 9/2 UDP/TLS/RTP/SAVPF 96",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "m=text 9 UDP/TLS/RTP/SAVPF 96",
    "m=video 9 UDP/TLS/RTP/SAVPF " + " ".join(str(n) for n in range(0, 128)),
    "c=IN X y", "c=IN IP4", "c=IN IP4 999.1.1.1", "c=", "c=IN IP6 ::1", "c=IN IP4 0.0.0.0/127/2",
    "c=IN IP4 " + "1" * 1000, "o=", "o=- x y IN IP4 127.0.0.1", "s=", "t=x y", "t=0", "v=1", "v=0", "b=AS:-1",
    "b=AS:99999999999999999999", "b=TIAS:x", "b=", "a=", "a=:", "a=rtpmap:96 VP8/abc", "a=rtpmap:96",
    "a=rtpmap:x VP8/90000", "a=rtpmap:96 VP8/90000/2/3", "a=rtpmap:300 VP8/90000", "a=rtpmap:96 VP8/0",
    "a=rtpmap:96 VP8/-90000", "a=rtpmap:111 opus/48000/x", "a=rtpmap:111 opus/48000/0", "a=fmtp:96 ",
    "a=fmtp:96", "a=fmtp:102 profile-level-id=zz;packetization-mode=7", "a=fmtp:102 profile-level-id=",
    "a=fmtp:102 packetization-mode=", "a=fmtp:102 sprop-parameter-sets=!!!,@@@", "a=fmtp:97 apt=999",
    "a=fmtp:97 apt=x", "a=fmtp:97 apt=", "a=fmtp:111 minptime=x;useinbandfec=2;maxaveragebitrate=-5",
    "a=fmtp:x y", "a=rtcp-fb:96", "a=rtcp-fb:* nack", "a=rtcp-fb:x nack", "a=rtcp-fb:300 nack pli",
    "a=ssrc:4294967296 cname:x", "a=ssrc:-1 cname:x", "a=ssrc:x cname:x", "a=ssrc:1", "a=ssrc:",
    "a=ssrc-group:FID 1", "a=ssrc-group:FID", "a=ssrc-group:FID x y", "a=ssrc-group:SIM 1 2 3",
    "a=msid:", "a=msid", "a=mid:", "a=mid:0", "a=mid:" + "m" * 300, "a=group:BUNDLE 0 1 2 9", "a=group:BUNDLE",
    "a=group:LS 0 1", "a=fingerprint:sha-256 ZZ", "a=fingerprint:md5 00", "a=fingerprint:", "a=fingerprint:sha-256",
    "a=fingerprint:bogus " + "AA:" * 31 + "AA", "a=setup:bogus", "a=setup:", "a=setup:active", "a=setup:passive",
    "a=setup:holdconn", "a=ice-ufrag:", "a=ice-pwd:", "a=ice-ufrag:" + "u" * 600, "a=ice-options:",
    "a=ice-lite", "a=extmap:0 urn:x", "a=extmap:15 urn:x", "a=extmap:99999 urn:x", "a=extmap:x",
    "a=extmap:1/sendrecv urn:ietf:params:rtp-hdrext:sdes:mid", "a=extmap:1/bogus urn:x", "a=rtcp:abc",
    "a=rtcp:9 IN IP4 x", "a=rtcp:70000", "a=sctp-port:x", "a=max-message-size:-1", "a=sendrecv", "a=inactive",
    "a=sendonly", "a=recvonly", "a=end-of-candidates", "a=rid:x send", "a=rid:", "a=simulcast:send 1;2",
    "a=simulcast:", "a=ptime:x", "a=maxptime:-5", "a=framerate:NaN", "a=imageattr:* send [x=0,y=0]",
    "a=x-google-flag:conference", "a=rtcp-mux-only", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x",
    "a=identity:x", "a=tls-id:", "a=msid-semantic:", "a=extmap-allow-mixed:x", "a=\x00", "a=\u202e",
    "a=candidate:1 1 udp 1 1.2.3.4", "a=candidate:", "a=candidate",
    "x=unknown line type", "=", " ", "\t", "v", "\x00", "a=rtpmap:96 VP8/90000\x00",
]
# Candidates nobody should send (with or without the "candidate:" prefix).
BAD_CANDIDATES = [
    "1 1 udp 1 1.2.3.4", "candidate:1 1 udp 1 1.2.3.4", "candidate:1 1 udp 99999999999999999999 1.2.3.4 9 typ host",
    "candidate:1 1 udp 1 1.2.3.4 70000 typ host", "candidate:1 x udp 1 1.2.3.4 9 typ host",
    "candidate:1 1 udp 1 not-an-address 9 typ host", "candidate:1 1 udp 1 1.2.3.4 9 typ", "candidate:1 1 udp 1 1.2.3.4 9",
    "candidate:1 0 udp 1 127.0.0.1 9 typ host", "candidate:1 3 udp 1 127.0.0.1 9 typ host",
    "candidate:1 1 tcp 1 127.0.0.1 9 typ host tcptype bogus", "candidate:1 1 sctp 1 127.0.0.1 9 typ host",
    "candidate:1 1 udp -1 127.0.0.1 9 typ host", "candidate:1 1 udp 1 127.0.0.1 -9 typ host",
    "candidate:1 1 udp 1 127.0.0.1 0 typ host", "candidate:1 1 udp 1 127.0.0.1 9 typ relay",
    "candidate:1 1 udp 1 127.0.0.1 9 typ srflx raddr", "candidate:1 1 udp 1 127.0.0.1 9 typ srflx raddr x rport y",
    "candidate:1 1 udp 1 127.0.0.1 9 typ bogus", "candidate:1 1 udp 1 ::1 9 typ host", "candidate:1 1 udp 1 [::1] 9 typ host",
    "candidate:1 1 udp 1 ::ffff:1.2.3.4 9 typ host", "candidate:1 1 udp 1 fe80::1%eth0 9 typ host",
    "candidate:1 1 udp 1 0.0.0.0 9 typ host", "candidate:1 1 udp 1 255.255.255.255 9 typ host",
    "candidate:1 1 udp 1 224.0.0.251 5353 typ host", "candidate:1 1 udp 1 abc.local 9 typ host",
    "candidate:1 1 udp 1 example.invalid 9 typ host", "candidate:1 1 udp 1 192.0.2.1 9 typ host generation x",
    "candidate:1 1 udp 1 198.51.100.7 9 typ host ufrag", "candidate:" + "f" * 1900 + " 1 udp 1 127.0.0.1 9 typ host",
    "candidate:1 1 udp 1 127.0.0.1 9 typ host " + "x " * 900, "candidate:candidate:1 1 udp 1 127.0.0.1 9 typ host",
    "candidate:\u202e1 1 udp 1 127.0.0.1 9 typ host", "candidate:1\x001 udp 1 127.0.0.1 9 typ host", " ", "\t",
    "candidate:", "candidate", "a=candidate:1 1 udp 1 127.0.0.1 9 typ host", "candidate:1 1 UDP 1 127.0.0.1 9 TYP HOST",
    "candidate:1 1 udp 1 127.0.0.1 9 typ host\r\na=candidate:2 1 udp 1 127.0.0.1 9 typ host",
]
ADDRESSES = ["127.0.0.1", "1.2.3.4", "192.0.2.1", "198.51.100.7", "203.0.113.9", "::1", "0.0.0.0", "127.0.0.2"]


@dataclass(frozen=True)
class Mutant:
    """One fuzz case's offer: what was done to which seed, and the bytes sent."""

    seed: str
    steps: tuple[str, ...]
    body: bytes

    @property
    def name(self) -> str:
        return f"{self.seed}: {'; '.join(self.steps)}"

    @property
    def text(self) -> str:
        """For a websocket message (text only): the bytes as UTF-8, undecodable ones replaced."""
        return self.body.decode("utf-8", errors="replace")


Lines = list[str]
LineOperator = Callable[[random.Random, Lines], str]


def _sections(lines: Lines) -> list[int]:
    return [i for i, line in enumerate(lines) if line.startswith("m=")]


def _pick(rng: random.Random, lines: Lines, prefix: str = "") -> int:
    chosen = [i for i, line in enumerate(lines) if line.startswith(prefix)] or list(range(len(lines)))
    return rng.choice(chosen) if chosen else 0


def delete_line(rng: random.Random, lines: Lines) -> str:
    if not lines:
        return "nothing to delete"
    index = _pick(rng, lines, rng.choice(["", "a=", "m=", "c=", "a=rtpmap", "a=fingerprint", "a=ice-", "a=mid",
                                           "a=setup", "v=", "o=", "t="]))
    return f"deleted {lines.pop(index)[:60]!r}"


def duplicate_line(rng: random.Random, lines: Lines) -> str:
    if not lines:
        return "nothing to duplicate"
    index = _pick(rng, lines)
    times = rng.choice([1, 1, 2, 50])
    lines[index + 1:index + 1] = [lines[index]] * times
    return f"duplicated {lines[index][:60]!r} x{times}"


def swap_lines(rng: random.Random, lines: Lines) -> str:
    if len(lines) < 2:
        return "too short to swap"
    a, b = rng.sample(range(len(lines)), 2)
    lines[a], lines[b] = lines[b], lines[a]
    return f"swapped {lines[b][:40]!r} and {lines[a][:40]!r}"


def move_line(rng: random.Random, lines: Lines) -> str:
    sections = _sections(lines)
    if len(lines) < 2:
        return "too short to move"
    index = _pick(rng, lines, "a=")
    line = lines.pop(index)
    target = rng.choice(sections + [0, len(lines)]) if sections else rng.randrange(len(lines) + 1)
    lines.insert(min(target + 1, len(lines)), line)
    return f"moved {line[:60]!r}"


def replace_number(rng: random.Random, lines: Lines) -> str:
    candidates = [i for i, line in enumerate(lines) if re.search(r"\d", line)]
    if not candidates:
        return "no number"
    index = rng.choice(candidates)
    matches = list(re.finditer(r"\d+", lines[index]))
    match = rng.choice(matches)
    value = rng.choice(NUMBERS)
    before = lines[index]
    lines[index] = before[:match.start()] + value + before[match.end():]
    return f"{before[:50]!r}: {match.group()} -> {value[:20]!r}"


def payload_types(rng: random.Random, lines: Lines) -> str:
    sections = _sections(lines)
    if not sections:
        return "no media line"
    index = rng.choice(sections)
    parts = lines[index].split(" ")
    value = rng.choice(["300", "-1", "128", "abc", "", "96 96 96", "0", "35", "127", "65535"])
    if len(parts) > 3:
        parts[rng.randrange(3, len(parts))] = value
    else:
        parts.append(value)
    lines[index] = " ".join(parts)
    return f"payload type {value!r} in {lines[index][:50]!r}"


def insert_bad_line(rng: random.Random, lines: Lines) -> str:
    line = rng.choice(BAD_LINES)
    lines.insert(rng.randrange(len(lines) + 1), line)
    return f"inserted {line[:60]!r}"


def replace_value(rng: random.Random, lines: Lines) -> str:
    candidates = [i for i, line in enumerate(lines) if line.startswith("a=") and ":" in line]
    if not candidates:
        return "no attribute"
    index = rng.choice(candidates)
    key = lines[index].split(":", 1)[0]
    value = rng.choice(["", " ", "x", "\x00", "\u202e", "-1", "99999999999999999999", ":" * 100, "a" * 5000,
                        "96 VP8/90000", "sha-256", "0 1", "%s", "{}", "\ud7ff"])
    before = lines[index]
    lines[index] = f"{key}:{value}"
    return f"{before[:40]!r} value -> {value[:20]!r}"


def remove_all(rng: random.Random, lines: Lines) -> str:
    prefix = rng.choice(["a=fingerprint", "a=ice-ufrag", "a=ice-pwd", "a=setup", "a=mid", "a=rtpmap", "a=candidate",
                         "a=group", "c=", "a=rtcp-mux", "a=ssrc", "a=msid", "a=fmtp", "m=audio", "a=extmap"])
    lines[:] = [line for line in lines if not line.startswith(prefix)]
    return f"every {prefix!r} line removed"


def bad_candidate_line(rng: random.Random, lines: Lines) -> str:
    candidate = mutate_candidate(rng, rng.choice(["candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host"]))
    line = "a=" + candidate if not candidate.startswith("a=") else candidate
    lines.insert(rng.randrange(len(lines) + 1), line)
    return f"candidate {line[:60]!r}"


def extra_sections(rng: random.Random, lines: Lines) -> str:
    sections = _sections(lines)
    if not sections:
        return "no section"
    start = rng.choice(sections)
    end = next((i for i in sections if i > start), len(lines))
    times = rng.choice([1, 2, 30])
    lines.extend(lines[start:end] * times)
    return f"section {lines[start][:30]!r} repeated x{times}"


def section_kind(rng: random.Random, lines: Lines) -> str:
    sections = _sections(lines)
    if not sections:
        return "no section"
    index = rng.choice(sections)
    kind = rng.choice(["audio", "video", "application", "text", "message", "", "VIDEO", "video\x00"])
    lines[index] = re.sub(r"^m=\w*", f"m={kind}", lines[index])
    return f"section made {kind!r}"


LINE_OPERATORS: list[LineOperator] = [
    delete_line, delete_line, duplicate_line, swap_lines, move_line, replace_number, replace_number, payload_types,
    insert_bad_line, insert_bad_line, insert_bad_line, replace_value, remove_all, bad_candidate_line, extra_sections,
    section_kind,
]


def _join(rng: random.Random, lines: Lines) -> tuple[str, str]:
    ending = rng.choice(["\r\n"] * 8 + ["\n", "\r", "\r\n\r\n", "\n\r"])
    text = ending.join(lines)
    final = rng.choice([ending] * 6 + ["", " ", "\r\n\x00"])
    step = "" if ending == "\r\n" and final == "\r\n" else f"lines end {ending!r}, text ends {final!r}"
    return text + final, step


def _bytes_operator(rng: random.Random, body: bytes) -> tuple[bytes, str]:
    choice = rng.randrange(7)
    if choice == 0 and body:
        at = rng.randrange(len(body))
        return body[:at], f"cut at byte {at}"
    if choice == 1:
        at = rng.randrange(len(body) + 1)
        junk = bytes(rng.randrange(256) for _ in range(rng.choice([1, 3, 16, 200])))
        return body[:at] + junk + body[at:], f"{len(junk)} random bytes at {at}"
    if choice == 2 and body:
        data = bytearray(body)
        for _ in range(rng.choice([1, 2, 8])):
            at = rng.randrange(len(data))
            data[at] ^= 1 << rng.randrange(8)
        return bytes(data), "bits flipped"
    if choice == 3:
        prefix = rng.choice([b"\xef\xbb\xbf", b" ", b"\r\n", b"\x00", b"V=0\r\n", b"\xff\xfe"])
        return prefix + body, f"prefixed {prefix!r}"
    if choice == 4:
        return body.upper() if rng.random() < 0.5 else body.lower(), "case changed"
    if choice == 5:
        target = rng.choice([199_999, 200_000, 200_001, 250_000])
        return (body + b"a=x-pad:" + b"p" * max(0, target - len(body) - 10) + b"\r\n")[:target], f"padded to {target}"
    return body, "bytes kept"


def mutate_offer(rng: random.Random, name: str, sdp: str, *, bytes_level: bool = True) -> Mutant:
    """One to three line-level changes, sometimes line endings, and (sometimes) one change to the bytes."""
    lines = [line for line in sdp.replace("\r\n", "\n").split("\n") if line]
    steps = [rng.choice(LINE_OPERATORS)(rng, lines) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
    text, ending = _join(rng, lines)
    if ending:
        steps.append(ending)
    body = text.encode("utf-8", errors="surrogatepass")
    if bytes_level and rng.random() < 0.25:
        body, step = _bytes_operator(rng, body)
        steps.append(step)
    return Mutant(name, tuple(steps), body)


# What a connecting client's offer may get wrong and still parse: the DTLS, ICE and RTP attributes.
CONNECT_LINES = [
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=fingerprint:md5 " + ":".join(["AB"] * 16),
    "a=fingerprint:sha-1 " + ":".join(["AB"] * 20), "a=fingerprint:sha-256 AB", "a=setup:active", "a=setup:passive",
    "a=setup:holdconn", "a=setup:bogus", "a=ice-lite", "a=ice-options:ice2", "a=rtcp-mux-only", "a=sendrecv",
    "a=inactive", "a=sendonly", "a=ssrc:1 cname:x", "a=ssrc-group:FID 1 2", "a=extmap:1 urn:x",
    "a=rtpmap:97 VP8/1", "a=fmtp:97 max-fr=0;max-fs=0", "a=rtcp-fb:97 nack sli", "a=mid:0", "a=mid:1",
]
CONNECT_DELETIONS = ["a=fingerprint", "a=setup", "a=ice-ufrag", "a=ice-pwd", "a=rtcp-mux", "a=mid", "a=ssrc",
                     "a=group", "a=rtpmap:97", "a=extmap", "a=candidate", "a=rtcp:"]


def mutate_connectable(rng: random.Random, name: str, sdp: str) -> Mutant:
    """A change to a real client's offer that it may still connect with: DTLS, ICE and RTP attributes."""
    lines = [line for line in sdp.split("\r\n") if line]
    steps = []
    for _ in range(rng.choice([1, 1, 2])):
        if rng.random() < 0.5:
            prefix = rng.choice(CONNECT_DELETIONS)
            lines = [line for line in lines if not line.startswith(prefix)]
            steps.append(f"every {prefix!r} line removed")
        else:
            line = rng.choice(CONNECT_LINES)
            sections = _sections(lines)
            at = rng.choice(sections) + 1 if sections and rng.random() < 0.7 else rng.randrange(len(lines) + 1)
            # An attribute of the same name replaced, or added.
            key = line.split(":", 1)[0]
            same = [i for i in range(at, len(lines)) if lines[i].startswith(key + ":") or lines[i] == key]
            if same and rng.random() < 0.6:
                lines[same[0]] = line
                steps.append(f"{key} replaced by {line[:50]!r}")
            else:
                lines.insert(at, line)
                steps.append(f"inserted {line[:50]!r}")
    return Mutant(name, tuple(steps), ("\r\n".join(lines) + "\r\n").encode())


def mutate_candidate(rng: random.Random, candidate: str) -> str:
    """A candidate line broken one or two ways (or one of BAD_CANDIDATES as it is)."""
    if rng.random() < 0.3:
        return rng.choice(BAD_CANDIDATES)
    tokens = candidate.split(" ")
    for _ in range(rng.choice([1, 1, 2])):
        choice = rng.randrange(8)
        if choice == 0 and len(tokens) > 1:
            tokens.pop(rng.randrange(len(tokens)))
        elif choice == 1:
            at = rng.randrange(len(tokens))
            tokens.insert(at, tokens[at])
        elif choice == 2 and len(tokens) > 1:
            a, b = rng.sample(range(len(tokens)), 2)
            tokens[a], tokens[b] = tokens[b], tokens[a]
        elif choice == 3:
            at = rng.randrange(len(tokens))
            tokens[at] = rng.choice(NUMBERS + ["udp", "tcp", "typ", "host", "relay", "raddr", "rport", ""])
        elif choice == 4 and len(tokens) > 4:
            tokens[4] = rng.choice(ADDRESSES + ["x", "", "999.0.0.1", "a.local", "::ffff:127.0.0.1"])
        elif choice == 5:
            tokens += rng.choice([["generation", "x"], ["raddr", "1.2.3.4", "rport", "x"], ["tcptype"],
                                  ["ufrag", ""], ["network-cost", "-5"], ["x"] * 50])
        elif choice == 6:
            text = " ".join(tokens)
            tokens = text[:rng.randrange(len(text) + 1)].split(" ")
        else:
            tokens[0] = rng.choice(["", "candidate:", "candidate:" * 3, "a=candidate:1", "\u202e", "x" * 300])
    return " ".join(tokens)


def trickle_fragment(rng: random.Random, candidate: str) -> bytes:
    """An application/trickle-ice-sdpfrag body (RFC 8840), usually with a broken candidate."""
    lines = ["a=ice-ufrag:EsAw", "a=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y", "m=audio 9 RTP/AVP 0", "a=mid:0",
             "a=" + mutate_candidate(rng, candidate), "a=end-of-candidates"]
    for _ in range(rng.choice([0, 1, 2])):
        rng.choice(LINE_OPERATORS)(rng, lines)
    text, _ = _join(rng, lines)
    body = text.encode("utf-8", errors="surrogatepass")
    if rng.random() < 0.2:
        body, _ = _bytes_operator(rng, body)
    return body


def candidates_of(sdp: str) -> list[str]:
    """The candidate lines of an offer, as a websocket ``candidate`` message carries them."""
    return [line[2:] for line in sdp.splitlines() if line.startswith("a=candidate:")]


async def real_offers() -> dict[str, str]:
    """aiortc's offers: a viewer (WHEP), publishers of VP8 and of H.264 with Opus (WHIP); and Chrome's viewer."""
    from aiortc import RTCRtpSender

    from tests.media.clients import ColourTrack, ToneTrack, new_client

    offers: dict[str, str] = {"chrome-view": CHROME_VIEW}
    viewer = new_client()
    viewer.addTransceiver("video", direction="recvonly")
    viewer.addTransceiver("audio", direction="recvonly")
    for codec in ("vp8", "h264"):
        publisher = new_client()
        video = publisher.addTransceiver(ColourTrack((10, 20, 30)), direction="sendonly")
        video.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                   if c.mimeType.lower() in (f"video/{codec}", "video/rtx")])
        publisher.addTransceiver(ToneTrack(440), direction="sendonly")
        await publisher.setLocalDescription(await publisher.createOffer())
        offers[f"aiortc-publish-{codec}"] = publisher.localDescription.sdp
        await publisher.close()
    await viewer.setLocalDescription(await viewer.createOffer())
    offers["aiortc-view"] = viewer.localDescription.sdp
    await viewer.close()
    return offers


VIEW_SEEDS = ("aiortc-view", "chrome-view")
PUBLISH_SEEDS = ("aiortc-publish-vp8", "aiortc-publish-h264")
