"""Real browsers as WHEP-style viewers, and network namespaces to put them behind a real link.

A :class:`ViewerPage` is a tiny aiohttp site: ``/`` is a page that offers to
receive video and audio, waits for its ICE candidates (no trickle), POSTs the
offer to ``/offer`` and plays the answer's stream; every 250 ms it POSTs what
it shows (``videoWidth``/``videoHeight`` of the ``<video>``, the decoder's
frame size and counters from ``getStats``) to ``/samples``.  What answers the
offer is up to the caller: an in-process ``MediaRoom`` or a real server's WHEP
endpoint.  The browsers are Debian's, started as plain processes (Chromium
headless; Firefox ESR ``--headless`` with a fresh profile that sends nothing
off the machine), optionally inside a network namespace, and ended by their
process id.

:class:`Namespace` makes a test host: a network namespace joined to this one
by a veth pair on addresses of 198.18.0.0/15 (RFC 2544's benchmarking range,
routed nowhere), removed again at the end; ``shape()`` puts a rate limit
(``tc tbf``) or random loss on the link towards the namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

CHROMIUM = "/usr/bin/chromium"
FIREFOX = "/usr/bin/firefox-esr"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
]
# Nothing leaves the machine: no updates, telemetry, studies, captive portal or
# connectivity checks, safe browsing lists or codec downloads; a dead proxy
# catches anything forgotten (127.0.0.1, where the page is, is exempt).
FIREFOX_PREFS: dict[str, Any] = {
    "app.update.enabled": False,
    "app.update.auto": False,
    "app.normandy.enabled": False,
    "app.normandy.api_url": "",
    "app.shield.optoutstudies.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.aboutwelcome.enabled": False,
    "browser.newtabpage.enabled": False,
    "browser.newtabpage.activity-stream.feeds.telemetry": False,
    "browser.newtabpage.activity-stream.telemetry": False,
    "browser.ping-centre.telemetry": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.downloads.remote.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.safebrowsing.provider.google.updateURL": "",
    "browser.safebrowsing.provider.google4.updateURL": "",
    "browser.safebrowsing.provider.mozilla.updateURL": "",
    "browser.search.update": False,
    "browser.search.geoip.url": "",
    "browser.region.network.url": "",
    "browser.region.update.enabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.archive.enabled": False,
    "toolkit.telemetry.server": "",
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.predictor.enabled": False,
    "network.http.speculative-parallel-limit": 0,
    "network.trr.mode": 5,
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.systemAddon.update.enabled": False,
    "extensions.blocklist.enabled": False,
    "services.settings.server": "",
    "media.gmp-manager.url": "",
    "media.gmp-gmpopenh264.enabled": False,
    "media.gmp-gmpopenh264.autoupdate": False,
    "media.gmp-widevinecdm.enabled": False,
    "media.eme.enabled": False,
    "network.proxy.type": 1,
    "network.proxy.http": "127.0.0.1",
    "network.proxy.http_port": 9,
    "network.proxy.ssl": "127.0.0.1",
    "network.proxy.ssl_port": 9,
    "network.proxy.no_proxies_on": "127.0.0.1, 198.18.0.0/15",
    "network.proxy.allow_hijacking_localhost": False,
    "media.autoplay.default": 0,
    "media.autoplay.blocking_policy": 0,
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "media.peerconnection.ice.loopback": True,
    "media.peerconnection.ice.default_address_only": False,
    "media.peerconnection.ice.no_host": False,
    "media.navigator.permission.disabled": True,
    "media.navigator.streams.fake": True,
    # The page of a test host in a namespace is not a secure context (only 127.0.0.1 is).
    "media.devices.insecure.enabled": True,
    "media.getusermedia.insecure.enabled": True,
    "browser.tabs.remote.autostart": True,
    "media.peerconnection.mtransport_process": False,
    "network.process.enabled": False,
}

PAGE = """<!doctype html>
<meta charset="utf-8"><title>viewer</title>
<video id="program" autoplay muted playsinline></video>
<script>
const started = performance.now();
const post = (path, body) => fetch(path, {method: "POST", body: JSON.stringify(body)}).catch(() => {});
async function main() {
  if (location.search.includes("capture")) {
    // Firefox gathers only its default route's address for a page that captures
    // nothing: a (fake) camera lets it honour the loopback and interface prefs.
    window.camera = await navigator.mediaDevices.getUserMedia({video: true});
  }
  const pc = new RTCPeerConnection({iceServers: []});
  pc.addTransceiver("video", {direction: "recvonly"});
  pc.addTransceiver("audio", {direction: "recvonly"});
  const video = document.getElementById("program");
  pc.ontrack = (event) => {
    if (event.track.kind !== "video") return;
    video.srcObject = new MediaStream([event.track]);
    video.play().catch(() => {});
  };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && resolve());
    setTimeout(resolve, 3000);
  });
  const reply = await fetch("/offer", {method: "POST", body: pc.localDescription.sdp});
  if (!reply.ok) { post("/samples", {error: "offer: " + reply.status + " " + await reply.text()}); return; }
  await pc.setRemoteDescription({type: "answer", sdp: await reply.text()});
  setInterval(async () => {
    const sample = {t: (performance.now() - started) / 1000, width: video.videoWidth, height: video.videoHeight,
                    state: pc.connectionState};
    const stats = await pc.getStats();
    for (const report of stats.values()) {
      if (report.type === "inbound-rtp" && report.kind === "video") {
        const codec = report.codecId && stats.get(report.codecId);
        Object.assign(sample, {frameWidth: report.frameWidth || 0, frameHeight: report.frameHeight || 0,
          framesDecoded: report.framesDecoded || 0, packetsLost: report.packetsLost || 0,
          packetsReceived: report.packetsReceived || 0, bytesReceived: report.bytesReceived || 0,
          framesDropped: report.framesDropped || 0, freezeCount: report.freezeCount || 0,
          freezeSeconds: report.totalFreezesDuration || 0,
          codec: codec ? codec.mimeType : ""});
      }
    }
    if (video.videoWidth) {
      // The centre of the picture shown, as the pixel tests read it.
      const canvas = window.probe || (window.probe = document.createElement("canvas"));
      canvas.width = 16; canvas.height = 16;
      const context = canvas.getContext("2d", {willReadFrequently: true});
      context.drawImage(video, video.videoWidth / 4, video.videoHeight / 4, video.videoWidth / 2,
                        video.videoHeight / 2, 0, 0, 16, 16);
      const data = context.getImageData(0, 0, 16, 16).data;
      const mean = [0, 1, 2].map((c) => { let sum = 0; for (let i = c; i < data.length; i += 4) sum += data[i];
                                          return Math.round(sum / (data.length / 4)); });
      sample.colour = mean;
    }
    post("/samples", sample);
  }, 250);
}
main().catch((error) => post("/samples", {error: String(error)}));
</script>
"""


@dataclass
class ViewerPage:
    """The viewer page's site; ``samples`` collects what the page reports."""

    answer: Callable[[str], Awaitable[str]]
    host: str = "127.0.0.1"
    samples: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    url: str = ""

    def pictures(self) -> list[tuple[int, int]]:
        """The decoded picture sizes the page showed, in order (0x0 before the first frame left out)."""
        return [(s["width"], s["height"]) for s in self.samples if s.get("width")]

    def last_picture(self) -> tuple[int, int] | None:
        pictures = self.pictures()
        return pictures[-1] if pictures else None

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[ViewerPage]:
        async def page(request: web.Request) -> web.Response:
            return web.Response(text=PAGE, content_type="text/html")

        async def offer(request: web.Request) -> web.Response:
            try:
                sdp = await self.answer(await request.text())
            except Exception as exc:  # reported to the test, not swallowed
                self.errors.append(f"answer: {exc!r}")
                return web.Response(status=500, text=str(exc))
            return web.Response(text=sdp, content_type="application/sdp")

        async def samples(request: web.Request) -> web.Response:
            sample = json.loads(await request.text())
            sample["at"] = time.monotonic()
            if "error" in sample:
                self.errors.append(sample["error"])
            else:
                self.samples.append(sample)
            return web.Response(status=204)

        app = web.Application()
        app.router.add_get("/", page)
        app.router.add_post("/offer", offer)
        app.router.add_post("/samples", samples)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{self.host}:{port}/"
        try:
            yield self
        finally:
            await runner.cleanup()


def browser_available(name: str) -> str | None:
    """Why ``name`` ("chromium" or "firefox") cannot run here, or None."""
    path = CHROMIUM if name == "chromium" else FIREFOX
    return None if os.path.exists(path) else f"{path} is missing (`make test` installs it from Debian)"


@contextlib.asynccontextmanager
async def browser(name: str, url: str, *, netns: str | None = None, interface: str = "lo",
                  loopback: bool = True) -> AsyncIterator[asyncio.subprocess.Process]:
    """Debian's Chromium or Firefox ESR, headless, showing ``url``; ended (by its pid) on exit.

    ``netns``: run it inside that network namespace.  ``interface`` (Firefox)
    and ``loopback`` (Chromium) say where it may gather ICE candidates.
    """
    profile = Path(tempfile.mkdtemp(prefix=f"bc-{name}-"))
    if name == "chromium":
        command = [CHROMIUM, *CHROMIUM_ARGS, f"--user-data-dir={profile}"]
        if loopback:
            command.append("--allow-loopback-in-peer-connection")
        command.append(url)
    else:
        prefs = {**FIREFOX_PREFS, "media.peerconnection.ice.force_interface": interface}
        (profile / "user.js").write_text(
            "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in prefs.items()))
        command = [FIREFOX, "--headless", "--no-remote", "--profile", str(profile), f"{url}?capture"]
    if netns is not None:
        command = ["ip", "netns", "exec", netns, *command]
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["HOME"] = str(profile)  # nothing of the caller's home is read or written
    env["MOZ_HEADLESS"] = "1"
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=env,
        start_new_session=True)
    try:
        yield process
    finally:
        await _end(process)
        shutil.rmtree(profile, ignore_errors=True)


async def _end(process: asyncio.subprocess.Process) -> None:
    """End the browser we started and the helpers it started (its own process group, by its pid)."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            await asyncio.wait_for(process.wait(), wait)
            return
        except TimeoutError:
            continue


def netns_unavailable() -> str | None:
    """Why a test cannot make a network namespace here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` (iproute2) is missing"
    if _iptables_path() is None:
        return "iptables is missing (`make test` installs it from Debian)"
    return None


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=20)


@dataclass
class Namespace:
    """A test host in its own network namespace, one veth pair away.

    ``host_address`` is this side's end (where the server gathers),
    ``address`` the namespace's (where the browser is).
    """

    name: str
    host_interface: str
    interface: str
    host_address: str
    address: str

    def shape(self, *, rate_kbit: int | None = None, loss_percent: float | None = None) -> None:
        """Constrain what reaches the namespace: a rate limit, or random loss.

        The rate limit is a ``tc`` token bucket on this side's veth (a
        bottleneck whose queue holds about 100 ms; beyond that, packets are
        dropped). The loss is iptables' ``statistic`` match dropping packets as
        they enter the namespace (this kernel has no netem); its rules live and
        die with the namespace.
        """
        if rate_kbit is not None:
            _run("tc", "qdisc", "replace", "dev", self.host_interface, "root", "tbf", "rate", f"{rate_kbit}kbit",
                 "burst", "6kb", "latency", "100ms")
        if loss_percent is not None:
            _run("ip", "netns", "exec", self.name, _iptables(), "-A", "INPUT", "-i", self.interface, "-m", "statistic",
                 "--mode", "random", "--probability", f"{loss_percent / 100:.4f}", "-j", "DROP")

    def clear(self) -> None:
        """Lift every constraint."""
        subprocess.run(["tc", "qdisc", "del", "dev", self.host_interface, "root"], capture_output=True, timeout=20)
        if _iptables_path() is not None:
            subprocess.run(["ip", "netns", "exec", self.name, _iptables(), "-F", "INPUT"], capture_output=True,
                           timeout=20)


def _iptables_path() -> str | None:
    return shutil.which("iptables-legacy") or shutil.which("iptables")


def _iptables() -> str:
    path = _iptables_path()
    if path is None:
        raise RuntimeError("iptables is missing (`make test` installs it from Debian)")
    return path


@contextlib.contextmanager
def namespace() -> Iterator[Namespace]:
    """A fresh namespace and veth pair with unique names and addresses, always removed at the end."""
    tag = f"{os.getpid() % 10000:04d}{random.randrange(16 ** 3):03x}"
    third, fourth = random.randrange(256), random.randrange(64) * 4
    prefix = f"198.{18 + random.randrange(2)}.{third}"
    ns = Namespace(f"bc-{tag}", f"bch{tag}", f"bcn{tag}", f"{prefix}.{fourth + 1}", f"{prefix}.{fourth + 2}")
    created = False
    try:
        _run("ip", "netns", "add", ns.name)
        created = True
        _run("ip", "link", "add", ns.host_interface, "type", "veth", "peer", "name", ns.interface, "netns", ns.name)
        for side in ([], ["-n", ns.name]):
            interface = ns.interface if side else ns.host_interface
            address = ns.address if side else ns.host_address
            # IPv4 only: no link-local IPv6 candidates on the test link.
            _run("ip", *side, "link", "set", interface, "up")
            _run("ip", *side, "addr", "add", f"{address}/30", "dev", interface)
        _run("ip", "netns", "exec", ns.name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        _run("sysctl", "-qw", f"net.ipv6.conf.{ns.host_interface}.disable_ipv6=1")
        _run("ip", "-n", ns.name, "link", "set", "lo", "up")
        yield ns
    finally:
        subprocess.run(["ip", "link", "del", ns.host_interface], capture_output=True, timeout=20)
        if created:
            subprocess.run(["ip", "netns", "del", ns.name], capture_output=True, timeout=20)


async def play_in_chromium(path: Path, content_type: str, seconds: float = 2.0) -> dict[str, Any]:
    """Play a media file in Debian's Chromium (a ``<video>`` of a page on 127.0.0.1) and say what it did.

    Returns the ``<video>``'s ``canPlayType`` of ``content_type``, its picture size, its duration and how
    far it played in ``seconds``, or the error it met.
    """
    from playwright.async_api import async_playwright

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>play</title><body></body>", content_type="text/html")

    async def media(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(path, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/media", media)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with async_playwright() as playwright:
            chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS[1:],
                                                        headless=True)
            try:
                tab = await chromium.new_page()
                await tab.goto(f"http://127.0.0.1:{port}/")
                return await tab.evaluate("""async ([type, seconds]) => {
                    const video = document.createElement("video");
                    video.muted = true; video.src = "/media"; document.body.appendChild(video);
                    const can = video.canPlayType(type);
                    try { await video.play(); } catch (error) { return {can, error: String(error)}; }
                    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
                    return {can, width: video.videoWidth, height: video.videoHeight, duration: video.duration,
                            played: video.currentTime, error: video.error ? video.error.message : null};
                }""", [content_type, seconds])
            finally:
                await chromium.close()
    finally:
        await runner.cleanup()
