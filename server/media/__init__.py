"""WebRTC media with aiortc: publishers in, one program feed out, forwarded without transcoding.

See docs/architecture.md, "The media hot path".  Everything that
touches aiortc's private internals is in :mod:`server.media.hooks`.
"""
