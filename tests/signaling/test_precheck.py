"""A hall's connection test: its camera and microphone through the hub and back, on the board (issue 13)."""

from __future__ import annotations

import asyncio

import numpy as np
from aiohttp.test_utils import TestClient
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from server import keys
from tests.conftest import Seed, bearer
from tests.media.clients import ColourTrack, ToneTrack, close_to, new_client, wait_until
from tests.signaling.helpers import add_session, connect

GREEN = (30, 200, 60)


class Echoed:
    """What came back: colours of the frames, and the sound."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        self.pc = pc
        self.colours: list[tuple[int, int, int]] = []
        self.audio: list[np.ndarray] = []
        self.tasks: list[asyncio.Task[None]] = []

        @pc.on("track")
        def on_track(track: object) -> None:
            self.tasks.append(asyncio.ensure_future(self._consume(track)))

    async def _consume(self, track: object) -> None:
        while True:
            try:
                frame = await track.recv()  # type: ignore[attr-defined]
            except MediaStreamError:
                return
            if getattr(track, "kind", "") == "video":
                image = frame.to_ndarray(format="rgb24")
                self.colours.append(tuple(int(v) for v in image.reshape(-1, 3).mean(axis=0)))
            else:
                self.audio.append(frame.to_ndarray().reshape(-1)[::2].astype(np.int16))

    def tone_energy(self, frequency: float) -> float:
        if not self.audio:
            return 0.0
        samples = np.concatenate(self.audio)[-48000:].astype(np.float64)
        spectrum = np.abs(np.fft.rfft(samples)) ** 2
        freqs = np.fft.rfftfreq(len(samples), 1 / 48000)
        band = (freqs > frequency - 20) & (freqs < frequency + 20)
        return float(spectrum[band].sum() / max(spectrum.sum(), 1e-9))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.pc.close()


async def start(client: TestClient, session_id: int, headers: dict[str, str]) -> tuple[Echoed, str | None, int]:
    pc = new_client()
    echoed = Echoed(pc)
    pc.addTransceiver(ColourTrack(GREEN), direction="sendrecv")
    pc.addTransceiver(ToneTrack(523.0), direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    response = await client.post(f"/api/v1/sessions/{session_id}/precheck", data=pc.localDescription.sdp,
                                 headers={**headers, "Content-Type": "application/sdp"})
    if response.status != 201:
        await echoed.close()
        return echoed, None, response.status
    await pc.setRemoteDescription(RTCSessionDescription(await response.text(), "answer"))
    return echoed, response.headers["Location"], 201


async def test_a_halls_picture_and_sound_come_back_and_the_result_is_on_the_board(
        client: TestClient, seed: Seed) -> None:
    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id, seed.point_b.id])
    console = await connect(client, session_id, seed.speaker)
    hall = bearer(client.app, seed.operator)
    echoed, location, status = await start(client, session_id, hall)
    assert status == 201 and location is not None
    try:
        await wait_until(lambda: len(echoed.colours) >= 20, timeout=20)
        assert all(close_to(colour, GREEN) for colour in echoed.colours[-10:]), echoed.colours[-3:]
        await wait_until(lambda: echoed.tone_energy(523.0) > 0.5, timeout=10)
        # The round trip needs a sender report from the server, then the hall's receiver report about it:
        # each comes every 0.5-1.5 s, so 1.5 s could hold neither on a loaded machine (rtt_ms None).
        await asyncio.sleep(3.5)
        # Nobody else may end it; a test is not an endpoint of the roster.
        assert (await client.delete(location, headers=bearer(client.app, seed.member))).status == 403
        assert console.last("roster") is None or not [
            p for p in console.last("roster")["participants"] if p["role"] == "hall"]
        response = await client.delete(location, headers=hall)
        assert response.status == 200
        result = await response.json()
    finally:
        await echoed.close()
    assert result["ok"] and result["audio"] and result["detail"] == "", result
    assert result["video_frames"] >= 20 and result["bitrate_kbps"] > 20, result
    assert result["rtt_ms"] is not None and result["rtt_ms"] < 100, result
    told = await console.expect("precheck", bridge_point=seed.point_a.id)
    assert told["result"]["ok"] and told["result"]["video_frames"] == result["video_frames"]
    assert (await client.delete(location, headers=hall)).status == 404
    # The board shows it, from the room now, from the database once the room is gone.
    for _ in range(2):
        board = await (await client.get(f"/api/v1/sessions/{session_id}/roll-call",
                                        headers=bearer(client.app, seed.speaker))).json()
        row = next(p for p in board["points"] if p["bridge_point"] == seed.point_a.id)
        assert row["precheck"] and row["precheck"]["ok"] and row["precheck"]["video_frames"] == result["video_frames"]
        other = next(p for p in board["points"] if p["bridge_point"] == seed.point_b.id)
        assert other["precheck"] is None and other["state"] == "absent"
        await console.close()
        room = client.app[keys.LIVE].existing(session_id)
        if room is not None:
            await room.close()


async def test_only_a_hall_runs_a_connection_test(client: TestClient, seed: Seed) -> None:
    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id])
    for user, expected in ((seed.member, 403), (seed.speaker, 403), (seed.admin, 403)):
        echoed, location, status = await start(client, session_id, bearer(client.app, user))
        assert (status, location) == (expected, None), user.username
    # An operator of a point not invited is not a hall of this session.
    other = await add_session(client.app[keys.DATABASE], seed, [seed.point_b.id])
    _, location, status = await start(client, other, bearer(client.app, seed.operator))
    assert status in (403, 404) and location is None
