"""GET /metrics: Prometheus' text format, parsed by Prometheus' own parser, moving during a live session."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient, make_mocked_request
from prometheus_client.parser import text_string_to_metric_families

from server import keys
from server.app import create_app
from server.config import Settings
from server.views.metrics import _allowed
from tests.conftest import Seed, bearer, make_settings
from tests.media.clients import publish, view, wait_until
from tests.signaling.helpers import add_session, connect
from tests.signaling.test_whip_whep import http_answerer


async def scrape(client: TestClient, **headers: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    response = await client.get("/metrics", headers=headers)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[str, Any], name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


async def test_metrics_move_during_a_session(client: TestClient, seed: Seed) -> None:
    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id])
    before = await scrape(client)
    assert value(before, "bridgecast_sessions_live") == 0
    assert value(before, "process_resident_memory_bytes") > 10_000_000
    assert value(before, "bridgecast_bytes_sent_total") == 0

    console = await connect(client, session_id, seed.admin)
    await console.send("start")
    await console.expect("session", status="live")
    studio = await publish(http_answerer(client, f"/whip/sessions/{session_id}",
                                         bearer(client.app, seed.speaker), []), (200, 30, 30), 440)
    player = await view(http_answerer(client, f"/whep/sessions/{session_id}", bearer(client.app, seed.operator), []))
    try:
        await wait_until(lambda: player.frames >= 30, timeout=20)
        during = await scrape(client)
        await asyncio.sleep(1.5)
        later = await scrape(client)
        assert value(during, "bridgecast_sessions_live") == 1
        assert value(during, "bridgecast_endpoints", kind="publish") == 1
        assert value(during, "bridgecast_endpoints", kind="view") == 1
        assert value(during, "bridgecast_subscribers", session=str(session_id)) == 1
        assert value(during, "bridgecast_websockets") == 1
        for counter in ("bridgecast_bytes_sent_total", "bridgecast_packets_sent_total",
                        "bridgecast_bytes_received_total", "bridgecast_audio_mix_ticks_total",
                        "bridgecast_audio_mix_seconds_total"):
            assert value(later, counter) > value(during, counter) > 0, counter
        # A joining viewer asks for a keyframe; the loop's lag and the database were timed.
        assert value(during, "bridgecast_keyframe_requests_total") >= 1
        assert value(later, "bridgecast_event_loop_lag_seconds_count") > 0
        assert value(later, "bridgecast_database_statement_seconds_count") > 0
        assert value(later, "bridgecast_endpoints_opened_total", kind="view") == 1
    finally:
        await player.close()
        await studio.close()
        await console.close()
    # Closed endpoints keep their totals: a counter never goes back.
    await wait_until(lambda: not client.app[keys.LIVE].existing(session_id)
                     or not client.app[keys.LIVE].existing(session_id).media.endpoints(), timeout=10)
    after = await scrape(client)
    assert value(after, "bridgecast_bytes_sent_total") >= value(later, "bridgecast_bytes_sent_total")
    assert value(after, "bridgecast_endpoints", kind="view") == 0


async def test_a_metrics_token_is_asked_for_when_set(aiohttp_client: Any, settings: Settings, seed: Seed) -> None:
    client = await aiohttp_client(create_app(make_settings(settings.data_dir, metrics={"token": "s3cret-scraper"})))
    assert (await client.get("/metrics")).status == 403
    assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status == 403
    samples = await scrape(client, Authorization="Bearer s3cret-scraper")
    assert "bridgecast_sessions_live" in samples


def test_without_a_token_only_the_loopback_may_scrape(settings: Settings) -> None:
    app = create_app(settings)

    class Transport:
        def __init__(self, peer: str) -> None:
            self.peer = peer

        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return (self.peer, 40000) if name == "peername" else default

        def is_closing(self) -> bool:
            return False

    def request(peer: str, **headers: str) -> Any:
        return make_mocked_request("GET", "/metrics", headers=headers, app=app, transport=Transport(peer))

    assert _allowed(request("127.0.0.1")) and _allowed(request("::1"))
    assert not _allowed(request("203.0.113.9"))
    # A forwarded address is never believed here: the proxy in front is what connects.
    assert not _allowed(request("10.0.0.2", **{"X-Forwarded-For": "127.0.0.1"}))
