"""`bridgecast serve` with the layer policy as it was before issue 8 (for comparison only).

    python -m bench.before_policy serve

The policy of commit 43b2867, word for word in its rules, fed by today's
receiver-report hook: it counts reports, not time (two with 10 % loss, or
with a REMB below the program's bitrate, move a viewer down; eight clean
ones and eight seconds bring it back). Everything else is today's server,
so a before/after difference in bench/layer_policy.py is the policy's alone.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from server import cli
from server.media import room
from server.media.hooks import ReceiverReport


class BeforePolicy:
    DOWN_LOSS = 0.10
    DOWN_REPORTS = 2
    UP_LOSS = 0.02
    UP_REPORTS = 8

    def __init__(self, move: Callable[[str], None], clock: Callable[[], float] = time.monotonic,
                 needed: Callable[[], float] = lambda: 1_000_000) -> None:
        self.layer = "high"
        self.reason = ""
        self._move = move
        self._clock = clock
        self._bad = 0
        self._good = 0
        self._since = clock()
        self._bandwidth: int | None = None
        self._needed = needed

    def bandwidth(self, bits_per_second: int, octets_sent: int) -> None:
        self._bandwidth = bits_per_second

    def report(self, report: ReceiverReport) -> None:
        fraction_lost = report.fraction_lost
        starved = self.layer == "high" and self._bandwidth is not None and self._bandwidth < self._needed()
        if fraction_lost >= self.DOWN_LOSS or starved:
            self._bad += 1
            self._good = 0
        elif fraction_lost < self.UP_LOSS:
            self._good += 1
            self._bad = 0
        else:
            self._bad = self._good = 0
        if self.layer == "high" and self._bad >= self.DOWN_REPORTS:
            self._switch("low", "starved" if starved else "loss")
        elif (self.layer == "low" and self._good >= self.UP_REPORTS
              and self._clock() - self._since >= self.UP_REPORTS):
            self._switch("high", "clean reports")

    def _switch(self, layer: str, reason: str) -> None:
        self.layer, self.reason, self._bad, self._good, self._since = layer, reason, 0, 0, self._clock()
        room.log.info("layer policy: to the %s layer (%s, before issue 8)", layer, reason)
        self._move(layer)


def main() -> int:
    room.LayerPolicy = BeforePolicy  # type: ignore[misc,assignment]
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
