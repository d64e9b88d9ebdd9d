"""A whole live session over the real websocket protocol with aiortc peers on loopback.

The speaker publishes a red picture with a 440 Hz tone; five halls watch.
Hall 0 is given the floor and publishes green with a 1000 Hz tone: the others
see green and hear both tones, hall 0 hears the speaker but not itself.  When
the floor is taken back, red is on air again.
"""

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server import keys
from server.storage.models import FloorGrant, Session
from tests.conftest import Seed
from tests.media.clients import clean_cut, close_to, wait_until
from tests.signaling.helpers import add_halls, add_session, connect

RED = (220, 30, 30)
GREEN = (30, 200, 60)


async def test_speaker_to_five_halls_with_the_floor(client: TestClient, seed: Seed, password_hash: str) -> None:
    database = client.app[keys.DATABASE]
    halls = await add_halls(database, seed, 5, password_hash)
    session_id = await add_session(database, seed, [point.id for point, _ in halls])

    speaker = await connect(client, session_id, seed.speaker)
    assert speaker.received[0]["you"]["role"] == "host"
    camera = await speaker.publish(RED, 440)
    await speaker.send("start")
    await speaker.expect("session", status="live")

    hall_clients = [await connect(client, session_id, operator) for _, operator in halls]
    assert all(h.received[0]["you"]["role"] == "hall" for h in hall_clients)
    viewers = [await hall.view() for hall in hall_clients]
    others = viewers[1:]
    try:
        # Every hall sees the speaker's picture and hears the tone.
        await wait_until(lambda: all(v.frames >= 15 for v in viewers), timeout=20)
        for viewer in viewers:
            assert all(close_to(colour, RED) for colour in viewer.recent_colours())
        await wait_until(lambda: all(v.tone_energy(440) > 0.5 for v in viewers), timeout=10)
        roll_call = speaker.last("roll_call")
        assert roll_call is not None
        await wait_until(lambda: all(p["state"] == "receiving" for p in speaker.last("roll_call")["points"]))

        # Hall 0 raises its hand; the speaker sees the queue and grants the floor.
        point0 = halls[0][0]
        await hall_clients[0].send("raise_hand")
        floor = await speaker.expect("floor", since=0, queue=[{"point_id": point0.id, "name": point0.name}])
        assert floor["holder"] is None
        mark = hall_clients[0].mark()
        await speaker.send("grant_floor", point_id=point0.id, limit_seconds=600)
        granted = await hall_clients[0].expect("floor_granted", since=mark)
        assert granted["limit_seconds"] == 600
        marks = [viewer.frames for viewer in viewers]
        hall_camera = await hall_clients[0].publish(GREEN, 1000)
        # Every hall's picture cuts cleanly from the speaker to hall 0.
        for viewer, since in zip(viewers, marks, strict=True):
            await clean_cut(viewer, RED, GREEN, since=since)
        assert client.app[keys.LIVE].rooms[session_id].media.on_air == f"point:{point0.id}"
        await wait_until(lambda: all(v.tone_energy(1000) > 0.2 and v.tone_energy(440) > 0.2 for v in others),
                         timeout=10)
        # Mix-minus: the hall on the floor hears the speaker, never itself.
        await wait_until(lambda: viewers[0].tone_energy(440) > 0.5, timeout=10)
        assert viewers[0].tone_energy(1000) < 0.02
        states = {p["point_id"]: p["state"] for p in speaker.last("roll_call")["points"]}
        assert states[point0.id] == "floor"

        # Muting the hall takes its voice out of everyone's mix, and the hall is told.
        mark = hall_clients[0].mark()
        await speaker.send("mute", point_id=point0.id, muted=True)
        assert (await hall_clients[0].expect("mute", since=mark))["muted"] is True
        await wait_until(lambda: all(v.tone_energy(1000, 0.5) < 0.01 for v in others), timeout=10)
        assert all(v.tone_energy(440, 0.5) > 0.5 for v in others)
        await speaker.send("mute", point_id=point0.id, muted=False)
        await wait_until(lambda: all(v.tone_energy(1000, 0.5) > 0.2 for v in others), timeout=10)

        # "Show the speaker" puts the speaker's picture on air while the hall still holds the floor; "show the
        # floor" brings the hall back: clean cuts both ways.
        marks = [viewer.frames for viewer in viewers]
        await speaker.send("show", source="speaker")
        for viewer, since in zip(viewers, marks, strict=True):
            await clean_cut(viewer, GREEN, RED, since=since)
        assert (await speaker.expect("floor", program="speaker"))["holder"]["point_id"] == point0.id
        marks = [viewer.frames for viewer in viewers]
        await speaker.send("show", source="floor")
        for viewer, since in zip(viewers, marks, strict=True):
            await clean_cut(viewer, RED, GREEN, since=since)

        # Refused: a hall granting, a hall without the floor publishing, a hall lowering another's hand.
        mark = hall_clients[1].mark()
        await hall_clients[1].send("grant_floor", point_id=halls[1][0].id)
        assert (await hall_clients[1].expect("error", since=mark, request="grant_floor"))["code"] == "forbidden"
        await hall_clients[1].send("offer", pc="publish", sdp="v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n")
        assert (await hall_clients[1].expect("error", since=mark, request="offer"))["code"] == "forbidden"
        await hall_clients[1].send("lower_hand", point_id=point0.id)
        assert (await hall_clients[1].expect("error", since=mark, request="lower_hand"))["code"] == "forbidden"

        # The speaker takes the floor back: red is on air again (on a keyframe the
        # server asked the speaker for), the hall's feed is closed.
        mark = hall_clients[0].mark()
        marks = [viewer.frames for viewer in viewers]
        asked = camera.plis
        await speaker.send("revoke_floor")
        revoked = await hall_clients[0].expect("floor_revoked", since=mark)
        assert revoked["reason"] == "revoked"
        for viewer, since in zip(viewers, marks, strict=True):
            await clean_cut(viewer, GREEN, RED, since=since)
        assert camera.plis > asked
        ended = await speaker.expect("floor_ended", point_id=point0.id)
        assert ended["reason"] == "revoked" and ended["name"] == point0.name
        await hall_camera.close()

        # The grant is stored with its times.
        async with database.session() as db:
            grants = list(await db.scalars(select(FloorGrant).where(FloorGrant.session_id == session_id)))
        assert [(g.bridge_point_id, g.limit_seconds, g.end_reason) for g in grants] == [(point0.id, 600, "revoked")]
        assert grants[0].ended_at is not None and grants[0].ended_at >= grants[0].started_at

        # Ending tells every endpoint and closes them.
        await speaker.send("end")
        for hall in hall_clients:
            await hall.expect("session", status="ended")
        await wait_until(lambda: all(h.ws.closed for h in hall_clients), timeout=5)
        async with database.session() as db:
            session = await db.get(Session, session_id)
            assert session is not None and session.status.value == "ended" and session.actual_end is not None
        await wait_until(lambda: session_id not in client.app[keys.LIVE].rooms, timeout=5)
    finally:
        await camera.close()
        for viewer in viewers:
            await viewer.close()
        for hall in hall_clients:
            await hall.close()
        await speaker.close()


async def test_a_hall_whose_peer_connection_dies_reconnects_and_stays_one_participant(
        client: TestClient, seed: Seed) -> None:
    database = client.app[keys.DATABASE]
    session_id = await add_session(database, seed, [seed.point_a.id])
    speaker = await connect(client, session_id, seed.speaker)
    camera = await speaker.publish(RED, 440)
    await speaker.send("start")
    hall = await connect(client, session_id, seed.operator)
    viewer = await hall.view()
    try:
        await wait_until(lambda: viewer.frames >= 10, timeout=15)
        # The peer connection dies (aiortc has no ICE restart): the client builds a new one.
        await viewer.close()
        replacement = await hall.view()
        await wait_until(lambda: replacement.frames >= 10, timeout=15)
        assert all(close_to(colour, RED) for colour in replacement.recent_colours())
        # Then the websocket drops too, and the hall comes back on a new one.
        await hall.close()
        hall = await connect(client, session_id, seed.operator)
        again = await hall.view()
        await wait_until(lambda: again.frames >= 10, timeout=15)
        room = client.app[keys.LIVE].rooms[session_id]

        def one_hall_one_connection_one_feed() -> bool:
            halls = [p for p in room.session.roster.participants if p.point_id == seed.point_a.id]
            feeds = room.media.endpoints(f"point:{seed.point_a.id}")
            return len(halls) == 1 and halls[0].connections == 1 and len(feeds) == 1

        # Once the server has noticed the old socket close: still one hall, one connection, one feed.
        await wait_until(one_hall_one_connection_one_feed, timeout=5)
        await again.close()
        await replacement.close()
    finally:
        await camera.close()
        await hall.close()
        await speaker.close()
