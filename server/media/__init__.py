"""WebRTC media with aiortc: publishers in, one program feed out, forwarded without transcoding.

See ARCHITECTURE.md, "Media: forward, don't transcode".  Everything that
touches aiortc's private internals is in :mod:`server.media.hooks`.
"""
