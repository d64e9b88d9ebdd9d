from server.auth.ratelimit import SlidingWindowLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_window_blocks_after_limit_and_frees_as_it_slides() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(3, 60, clock=clock)
    for _ in range(3):
        assert not limiter.blocked("k")
        limiter.hit("k")
        clock.now += 10
    assert limiter.blocked("k")
    assert limiter.retry_after("k") == 30  # the first hit leaves the window at 1060
    clock.now = 1060.5
    assert not limiter.blocked("k")


def test_keys_are_independent_and_bounded() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(1, 60, max_keys=2, clock=clock)
    limiter.hit("a")
    limiter.hit("b")
    assert limiter.blocked("a") and limiter.blocked("b")
    limiter.hit("c")  # evicts the oldest key
    assert not limiter.blocked("a")
    assert limiter.blocked("c")
