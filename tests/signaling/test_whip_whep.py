"""WHIP ingest and WHEP playback with aiortc clients over HTTP, as OBS or a player would."""

from aiohttp.test_utils import TestClient

from server import keys
from tests.conftest import Seed, bearer
from tests.media.clients import close_to, publish, view, wait_until
from tests.signaling.helpers import add_session, connect

BLUE = (30, 60, 220)


def http_answerer(client: TestClient, path: str, headers: dict[str, str], resources: list[str]):
    async def answer(offer: str) -> str:
        response = await client.post(path, data=offer, headers={**headers, "Content-Type": "application/sdp"})
        assert response.status == 201, await response.text()
        assert response.headers["Content-Type"].startswith("application/sdp")
        resources.append(response.headers["Location"])
        return await response.text()

    return answer


async def test_whip_publish_and_whep_play(client: TestClient, seed: Seed) -> None:
    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id])
    speaker_token = bearer(client.app, seed.speaker, session_id=session_id)
    operator_token = bearer(client.app, seed.operator, session_id=session_id)
    console = await connect(client, session_id, seed.admin)
    await console.send("start")
    await console.expect("session", status="live")

    ingest: list[str] = []
    studio = await publish(http_answerer(client, f"/whip/sessions/{session_id}", speaker_token, ingest), BLUE, 440)
    playback: list[str] = []
    player = await view(http_answerer(client, f"/whep/sessions/{session_id}", operator_token, playback))
    try:
        assert ingest[0].startswith(f"/whip/sessions/{session_id}/")
        await wait_until(lambda: player.frames >= 20, timeout=20)
        assert all(close_to(colour, BLUE) for colour in player.recent_colours())
        await wait_until(lambda: player.tone_energy(440) > 0.5, timeout=10)
        # A hall operator's WHEP endpoint is the hall's: the roll call shows it receiving.
        await wait_until(lambda: any(p["state"] == "receiving" for p in (console.last("roll_call") or {}).get(
            "points", [])), timeout=5)

        # Trickle by PATCH is not offered; another user's resource cannot be deleted.
        patched = await client.patch(ingest[0], headers=speaker_token)
        assert patched.status == 405
        stolen = await client.delete(ingest[0], headers=operator_token)
        assert stolen.status == 403
        deleted = await client.delete(playback[0], headers=operator_token)
        assert deleted.status == 200
        await wait_until(lambda: [p["state"] for p in console.last("roll_call")["points"]] == ["not_connected"])
        assert (await client.delete(playback[0], headers=operator_token)).status == 404
        assert (await client.delete(ingest[0], headers=speaker_token)).status == 200
    finally:
        await studio.close()
        await player.close()
        await console.close()


async def test_whip_refuses_what_it_must(client: TestClient, seed: Seed) -> None:
    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id])
    offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    path = f"/whip/sessions/{session_id}"
    sdp = {"Content-Type": "application/sdp"}
    assert (await client.post(path, data=offer, headers=sdp)).status == 401
    member = await client.post(path, data=offer, headers={**bearer(client.app, seed.member), **sdp})
    assert member.status == 403  # only the speaker's token publishes
    wrong_type = await client.post(path, data=offer, headers={**bearer(client.app, seed.speaker),
                                                              "Content-Type": "text/plain"})
    assert wrong_type.status == 415
    garbage = await client.post(path, data="hello", headers={**bearer(client.app, seed.speaker), **sdp})
    assert garbage.status == 400
    assert (await garbage.json())["error"]["code"] == "bad_sdp"
    other_session = bearer(client.app, seed.speaker, session_id=session_id + 1)
    assert (await client.post(path, data=offer, headers={**other_session, **sdp})).status == 403
    options = await client.options(path)
    assert options.status == 204 and "application/sdp" in options.headers["Accept-Post"]


async def test_offers_the_server_cannot_honour_are_refused_cleanly(client: TestClient, seed: Seed) -> None:
    from aiortc import RTCRtpSender

    from tests.media.clients import new_client

    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id])
    headers = {**bearer(client.app, seed.member), "Content-Type": "application/sdp"}
    room_endpoints = lambda: len(client.app[keys.LIVE].rooms[session_id].media.endpoints())  # noqa: E731

    # Three media sections: an extra one would be received and decoded by nobody.
    extra = new_client()
    for _ in range(2):
        extra.addTransceiver("video", direction="recvonly")
    extra.addTransceiver("audio", direction="recvonly")
    await extra.setLocalDescription(await extra.createOffer())
    response = await client.post(f"/whep/sessions/{session_id}", data=extra.localDescription.sdp, headers=headers)
    assert response.status == 400 and (await response.json())["error"]["code"] == "bad_sdp"
    assert room_endpoints() == 0  # nothing half-made is left behind
    await extra.close()

    # H.264 in packetization-mode 0 only: forwarded H.264 needs FU-A (mode 1), and no VP8.
    h264 = new_client()
    video = h264.addTransceiver("video", direction="recvonly")
    video.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                               if c.mimeType.lower() == "video/h264"
                               and c.parameters.get("packetization-mode") == "0"])
    h264.addTransceiver("audio", direction="recvonly")
    await h264.setLocalDescription(await h264.createOffer())
    response = await client.post(f"/whep/sessions/{session_id}", data=h264.localDescription.sdp, headers=headers)
    assert response.status == 400 and (await response.json())["error"]["code"] == "bad_sdp"
    assert room_endpoints() == 0
    await h264.close()


async def test_one_role_per_person_is_a_conflict_not_a_crash(client: TestClient, seed: Seed) -> None:
    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id])
    watcher = await connect(client, session_id, seed.admin, **{"as": "member"})
    offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    response = await client.post(f"/whip/sessions/{session_id}", data=offer,
                                 headers={**bearer(client.app, seed.admin), "Content-Type": "application/sdp"})
    assert response.status == 409
    assert (await response.json())["error"]["code"] == "role_conflict"
    await watcher.close()


async def test_removing_a_participant_ends_its_whep_feed(client: TestClient, seed: Seed) -> None:
    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id])
    console = await connect(client, session_id, seed.speaker)
    resources: list[str] = []
    player = await view(http_answerer(client, f"/whep/sessions/{session_id}", bearer(client.app, seed.member),
                                      resources))
    room = client.app[keys.LIVE].rooms[session_id]
    assert room.media.endpoints(f"user:{seed.member.id}")
    await console.send("remove", key=f"user:{seed.member.id}")
    await wait_until(lambda: not room.media.endpoints(f"user:{seed.member.id}"), timeout=5)
    assert (await client.delete(resources[0], headers=bearer(client.app, seed.member))).status == 404
    await player.close()
    await console.close()


async def test_cancelling_a_session_closes_its_room(client: TestClient, seed: Seed) -> None:
    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id])
    hall = await connect(client, session_id, seed.operator)
    response = await client.post(f"/api/v1/sessions/{session_id}/cancel", headers=bearer(client.app, seed.admin))
    assert response.status == 200
    await wait_until(lambda: hall.closed_code is not None, timeout=5)
    assert hall.closed_code == 1000
    assert session_id not in client.app[keys.LIVE].rooms


async def test_the_consoles_camera_never_replaces_a_studio_feed_and_takes_over_when_it_stops(
        client: TestClient, seed: Seed) -> None:
    """OBS publishes the speaker over WHIP; the speaker's console is open for the floor and the start."""
    from tests.media.studio import clip, publish_studio

    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id])
    speaker_token = bearer(client.app, seed.speaker, session_id=session_id)
    ingest: list[str] = []
    studio = await publish_studio(http_answerer(client, f"/whip/sessions/{session_id}", speaker_token, ingest),
                                  clip(BLUE), 440)
    console = await connect(client, session_id, seed.speaker)
    player = await view(http_answerer(client, f"/whep/sessions/{session_id}", bearer(client.app, seed.operator),
                                      []))
    camera = None
    try:
        await console.send("start")
        await console.expect("session", status="live")
        await wait_until(lambda: player.frames >= 10, timeout=20)
        since = console.mark()
        await console.send("offer", pc="publish", sdp=studio.offer)
        refused = await console.expect("error", since=since, code="studio_feed")
        assert refused["request"] == "offer"
        # The studio is still what everyone sees, and the host is told how it keyframes.
        mark = player.frames
        await wait_until(lambda: player.frames >= mark + 20, timeout=10)
        assert all(close_to(colour, BLUE) for colour in player.recent_colours())
        sources = await console.expect("sources", timeout=10)
        assert [(s["key"], s["codec"]) for s in sources["sources"]] == [(f"user:{seed.speaker.id}", "h264")]
        # OBS stops: the console's camera is taken.
        assert (await client.delete(ingest[0], headers=speaker_token)).status == 200
        camera = await console.publish((220, 30, 30), 1000)
        await wait_until(lambda: close_to(player.colours[-1], (220, 30, 30)) if player.colours else False,
                         timeout=15)
    finally:
        await studio.close()
        if camera is not None:
            await camera.close()
        await player.close()
        await console.close()
