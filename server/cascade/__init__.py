"""The relay cascade: state shared between the server nodes (the hub and its relays), and later the relay node.

``server.cascade.redis`` holds the shared forms of two contracts of the live
domain: the event bus (``server.live.bus.EventBus``: events published on
one node reach the subscribers of every node) and the node registry
(``server.live.nodes.NodeRegistry``: who is alive, by heartbeats with a TTL).
Their in-memory forms stay the default for a hub without relays.
"""
