"""Which server nodes are alive: the hub and its relays, each as a heartbeat with a TTL.

A node (the hub, or a relay serving one unit's bridge points) says it is
alive by beating every few seconds with a time to live: a node that stops
beating (killed, cut off) drops out by itself when its TTL passes, without
anyone having to notice the failure; one that stops cleanly forgets itself
at once. What a beat carries (:class:`NodeInfo`) is what the hub needs to
run the cascade and show it: where the node is, whom it serves, which live
sessions it carries an uplink for, how many viewers hang from it, how it is
doing.

Pure Python: :class:`NodeRegistry` is the contract, :class:`InMemoryNodeRegistry`
the embedded default (one process, a hub without relays, and the tests); the
one shared between machines lives in ``server.cascade.redis``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol, TypeAlias

NodeKind: TypeAlias = Literal["hub", "relay"]
NODE_KINDS: frozenset[str] = frozenset({"hub", "relay"})

HealthValue: TypeAlias = float | int | str


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One node as its last heartbeat described it.

    ``beat_at`` is wall-clock Unix seconds (comparable between machines, for
    "last seen"; whether the node is alive is the registry's TTL, not this).
    ``health`` holds a few flat figures (``cpu``, ``rss``, the uplink's
    state): it is kept read-only, so a NodeInfo is safe to hand around, and
    it takes no part in the hash.
    """

    name: str
    kind: str
    url: str
    unit_id: int | None
    parent: str | None
    sessions: tuple[int, ...] = ()
    viewers: int = 0
    beat_at: float = 0.0
    health: Mapping[str, HealthValue] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a node needs a name")
        if self.kind not in NODE_KINDS:
            raise ValueError(f"node {self.name!r}: kind must be hub or relay, not {self.kind!r}")
        if self.viewers < 0:
            raise ValueError(f"node {self.name!r}: viewers must not be negative")
        if not math.isfinite(self.beat_at):
            raise ValueError(f"node {self.name!r}: beat_at must be a finite number")
        for key, value in self.health.items():
            if isinstance(value, float) and not math.isfinite(value):
                # JSON has no NaN: another node could not read this beat.
                raise ValueError(f"node {self.name!r}: health {key} must be finite")
        # A tuple even if given a list; a private read-only copy of health, so the caller's dict
        # changing later does not change a beat already taken.
        object.__setattr__(self, "sessions", tuple(self.sessions))
        object.__setattr__(self, "health", MappingProxyType(dict(self.health)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: plain dicts, lists, numbers and strings."""
        return {
            "name": self.name,
            "kind": self.kind,
            "url": self.url,
            "unit_id": self.unit_id,
            "parent": self.parent,
            "sessions": list(self.sessions),
            "viewers": self.viewers,
            "beat_at": self.beat_at,
            "health": dict(self.health),
        }

    @classmethod
    def from_dict(cls, body: Any) -> NodeInfo:
        """The NodeInfo :meth:`to_dict` made; ValueError for anything missing or of the wrong type.

        Strict about every field it knows, because a beat comes from another
        machine; keys it does not know are ignored, so a node of a newer
        version can add one without the others taking it for dead.
        """
        if not isinstance(body, Mapping):
            raise ValueError(f"a node's info must be an object, not {type(body).__name__}")

        def need(key: str) -> Any:
            if key not in body:
                raise ValueError(f"node info: missing {key}")
            return body[key]

        name = need("name")
        kind = need("kind")
        url = need("url")
        unit_id = need("unit_id")
        parent = need("parent")
        sessions = need("sessions")
        viewers = need("viewers")
        beat_at = need("beat_at")
        health = need("health")
        if not isinstance(name, str) or not isinstance(kind, str) or not isinstance(url, str):
            raise ValueError("node info: name, kind and url must be strings")
        if unit_id is not None and not _is_int(unit_id):
            raise ValueError("node info: unit_id must be an integer or null")
        if parent is not None and not isinstance(parent, str):
            raise ValueError("node info: parent must be a string or null")
        if not isinstance(sessions, list) or not all(_is_int(item) for item in sessions):
            raise ValueError("node info: sessions must be a list of integers")
        if not _is_int(viewers):
            raise ValueError("node info: viewers must be an integer")
        if not _is_number(beat_at):
            raise ValueError("node info: beat_at must be a number")
        if not isinstance(health, Mapping) or not all(
                isinstance(key, str) and (isinstance(value, str) or _is_number(value))
                for key, value in health.items()):
            raise ValueError("node info: health must map names to numbers or strings")
        return cls(name=name, kind=kind, url=url, unit_id=unit_id, parent=parent, sessions=tuple(sessions),
                   viewers=viewers, beat_at=float(beat_at), health=dict(health))


def _is_int(value: Any) -> bool:
    # JSON's true is Python's True, an int: not a count.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class NodeRegistry(Protocol):
    """Heartbeats of the nodes of one deployment; a node is alive until its last beat's TTL passes."""

    async def beat(self, info: NodeInfo, ttl_seconds: float) -> None:
        """``info.name`` is alive for ``ttl_seconds`` from now, as ``info`` says (replacing its last beat)."""
        ...

    async def alive(self) -> dict[str, NodeInfo]:
        """Every node whose last beat has not expired, by name (sorted by name)."""
        ...

    async def get(self, name: str) -> NodeInfo | None:
        """The node's last beat, if it has not expired."""
        ...

    async def forget(self, name: str) -> None:
        """The node stopped cleanly: it is gone now, not when its TTL passes. Unknown names are harmless."""
        ...

    async def close(self) -> None:
        ...


def check_ttl(ttl_seconds: float) -> None:
    if not ttl_seconds > 0 or not math.isfinite(ttl_seconds):
        raise ValueError(f"a heartbeat's TTL must be a positive number of seconds, not {ttl_seconds!r}")


class InMemoryNodeRegistry:
    """The embedded default: the nodes of this process (a hub alone, tests), expired by a monotonic clock.

    ``clock`` is injectable so tests can move time by hand.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._nodes: dict[str, tuple[NodeInfo, float]] = {}  # name -> (info, expires at)

    async def beat(self, info: NodeInfo, ttl_seconds: float) -> None:
        check_ttl(ttl_seconds)
        self._nodes[info.name] = (info, self._clock() + ttl_seconds)

    def _prune(self) -> None:
        now = self._clock()
        for name in [name for name, (_, expires) in self._nodes.items() if expires <= now]:
            del self._nodes[name]

    async def alive(self) -> dict[str, NodeInfo]:
        self._prune()
        return {name: self._nodes[name][0] for name in sorted(self._nodes)}

    async def get(self, name: str) -> NodeInfo | None:
        self._prune()
        entry = self._nodes.get(name)
        return entry[0] if entry is not None else None

    async def forget(self, name: str) -> None:
        self._nodes.pop(name, None)

    async def close(self) -> None:
        self._nodes.clear()
