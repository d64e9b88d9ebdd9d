from server.auth.ratelimit import LoginLimiter, SlidingWindowLimiter


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


def test_login_limiter_counts_per_ip_and_per_account() -> None:
    clock = Clock()
    limiter = LoginLimiter(per_ip=5, per_account=2, window=300, clock=clock)
    limiter.attempt("1.1.1.1", "Alice")
    limiter.attempt("2.2.2.2", "alice")
    assert limiter.retry_after("3.3.3.3", "ALICE") > 0  # the account is locked from any address
    assert limiter.retry_after("3.3.3.3", "bob") == 0
    for name in ("b", "c", "d", "e", "f"):
        limiter.attempt("9.9.9.9", name)
    assert limiter.retry_after("9.9.9.9", "someone-new") > 0  # the address is locked for any account
    limiter.succeeded("2.2.2.2", "alice")
    assert limiter.retry_after("3.3.3.3", "alice") == 0


def test_an_attempt_counts_before_it_is_checked_and_a_success_takes_it_back() -> None:
    clock = Clock()
    limiter = LoginLimiter(per_ip=3, per_account=10, window=300, clock=clock)
    # Three attempts under way at once (none verified yet): the fourth is refused at once.
    for name in ("a", "b", "c"):
        assert limiter.retry_after("1.1.1.1", name) == 0
        limiter.attempt("1.1.1.1", name)
    assert limiter.retry_after("1.1.1.1", "d") > 0
    limiter.succeeded("1.1.1.1", "c")
    assert limiter.retry_after("1.1.1.1", "d") == 0
