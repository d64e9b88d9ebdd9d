"""The websocket protocol of a live session: typed messages, one dispatch (docs/protocol.md)."""
