import base64
import hashlib
import hmac

from server.config import IceSettings
from server.media.ice import browser_ice_servers


def test_turn_credentials_follow_coturns_rest_form() -> None:
    settings = IceSettings(stun_urls="stun:turn.example.vn:3478",
                           turn_urls="turn:turn.example.vn:3478?transport=udp, turns:turn.example.vn:5349",
                           turn_secret="s3cret", turn_ttl_seconds=600)
    stun, turn = browser_ice_servers(settings, user_id=42, now=1_000_000)
    assert stun == {"urls": ["stun:turn.example.vn:3478"]}
    assert turn["urls"] == ["turn:turn.example.vn:3478?transport=udp", "turns:turn.example.vn:5349"]
    assert turn["username"] == "1000600:42"
    expected = base64.b64encode(hmac.new(b"s3cret", b"1000600:42", hashlib.sha1).digest()).decode()
    assert turn["credential"] == expected


def test_no_turn_without_a_secret_and_no_stun_while_addresses_are_confined() -> None:
    assert browser_ice_servers(IceSettings(turn_urls="turn:x:3478"), 1) == []
    confined = IceSettings(stun_urls="stun:x:3478", turn_urls="turn:x:3478", turn_secret="s", addresses="127.0.0.1")
    # TURN is what a hall behind a strict firewall needs: handed out whatever confines the server's media.
    (turn,) = browser_ice_servers(confined, 1)
    assert turn["urls"] == ["turn:x:3478"] and turn["username"].endswith(":1") and turn["credential"]


async def test_the_servers_own_agents_follow_the_same_setting() -> None:
    from server.media import hooks
    from server.media.peer import IceConfig, new_peer

    confined = IceConfig.from_settings(IceSettings(addresses="127.0.0.1, 198.18.7.1", stun_urls="stun:x:3478"))
    assert confined.addresses == ("127.0.0.1", "198.18.7.1")
    assert IceConfig.from_settings(IceSettings()).addresses == ()
    pc = new_peer(confined)
    pc.addTransceiver("video", direction="recvonly")
    connection = pc.getTransceivers()[0].receiver.transport.transport.iceGatherer._connection
    rule = hooks.address_rule(connection)
    assert rule is not None and rule.addresses == ("127.0.0.1", "198.18.7.1")
    assert connection.stun_server is None and connection.turn_server is None
    await pc.close()
