"""The live-session domain: lifecycle, roster, floor, permissions.

Pure Python: nothing here imports aiohttp, aiortc or SQLAlchemy.  Transport
(server/signaling, server/media) and storage depend on this package, never the
reverse.
"""
