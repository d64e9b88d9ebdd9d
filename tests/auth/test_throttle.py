"""Sign-in throttling: growing waits per account and source, never a lockout of the owner."""

from server.auth.throttle import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(throttle: LoginThrottle, account: str, source: str, address: str, *, device: bool = False) -> None:
    assert throttle.wait(account, source, address, device=device) == 0
    throttle.attempt(account, source, address, device=device)


def test_waits_begin_after_the_free_attempts_and_double_up_to_the_cap() -> None:
    clock = Clock()
    throttle = LoginThrottle(free=3, max_delay=10, per_account=100, per_address=100, clock=clock)
    for _ in range(3):
        fail(throttle, "Alice", "address:1.1.1.1", "1.1.1.1")
    waits = []
    for _ in range(6):
        wait = throttle.wait("alice", "address:1.1.1.1", "1.1.1.1")
        waits.append(wait)
        clock.now += wait
        fail(throttle, "alice", "address:1.1.1.1", "1.1.1.1")
    assert waits == [1, 2, 4, 8, 10, 10]
    # Another address is not slowed by this one's failures.
    assert throttle.wait("alice", "address:2.2.2.2", "2.2.2.2") == 0


def test_concurrent_attempts_are_counted_before_any_is_checked() -> None:
    throttle = LoginThrottle(free=5, clock=Clock())
    passed = 0
    for _ in range(200):  # all "at once": none has been checked yet
        if throttle.wait("speaker", "address:9.9.9.9", "9.9.9.9") == 0:
            throttle.attempt("speaker", "address:9.9.9.9", "9.9.9.9")
            passed += 1
    assert passed == 5


def test_a_guesser_from_many_addresses_slows_strangers_but_not_the_owners_known_places() -> None:
    clock = Clock()
    throttle = LoginThrottle(free=5, per_account=20, per_address=1000, window=300, clock=clock)
    # The owner signed in from home once, and holds a device cookie on the laptop.
    own = throttle.attempt("speaker", "address:5.5.5.5", "5.5.5.5")
    throttle.succeeded(own)
    for index in range(20):
        fail(throttle, "speaker", f"address:7.7.{index}.1", f"7.7.{index}.1")
    # Now every unknown source waits ...
    assert throttle.wait("speaker", "address:8.8.8.8", "8.8.8.8") > 0
    # ... while the owner at home, and on the laptop from anywhere, goes straight in.
    assert throttle.wait("speaker", "address:5.5.5.5", "5.5.5.5") == 0
    assert throttle.wait("speaker", "device:laptop", "8.8.8.8", device=True) == 0
    # Other accounts are not affected.
    assert throttle.wait("member", "address:8.8.8.8", "8.8.8.8") == 0
    # The window slides: later, unknown sources are free again.
    clock.now += 301
    assert throttle.wait("speaker", "address:8.8.8.8", "8.8.8.8") == 0


def test_one_address_spraying_many_accounts_waits_but_not_for_accounts_it_is_known_to() -> None:
    clock = Clock()
    throttle = LoginThrottle(free=5, per_account=100, per_address=10, clock=clock)
    known = throttle.attempt("operator", "address:3.3.3.3", "3.3.3.3")
    throttle.succeeded(known)
    for index in range(10):
        fail(throttle, f"user{index}", "address:3.3.3.3", "3.3.3.3")
    assert throttle.wait("someone-else", "address:3.3.3.3", "3.3.3.3") > 0
    assert throttle.wait("operator", "address:3.3.3.3", "3.3.3.3") == 0


def test_a_device_cookie_has_its_own_growing_wait() -> None:
    clock = Clock()
    throttle = LoginThrottle(free=2, per_account=100, per_address=100, clock=clock)
    for _ in range(2):
        fail(throttle, "speaker", "device:stolen", "6.6.6.6", device=True)
    assert throttle.wait("speaker", "device:stolen", "6.6.6.6", device=True) == 1


def test_a_success_starts_the_pair_afresh_and_a_withdrawn_attempt_does_not_count() -> None:
    clock = Clock()
    throttle = LoginThrottle(free=2, per_account=100, per_address=100, clock=clock)
    fail(throttle, "a", "address:1.1.1.1", "1.1.1.1")
    attempt = throttle.attempt("a", "address:1.1.1.1", "1.1.1.1")
    assert throttle.wait("a", "address:1.1.1.1", "1.1.1.1") == 1
    throttle.withdraw(attempt)
    assert throttle.wait("a", "address:1.1.1.1", "1.1.1.1") == 0
    attempt = throttle.attempt("a", "address:1.1.1.1", "1.1.1.1")
    throttle.succeeded(attempt)
    for _ in range(2):
        fail(throttle, "a", "address:1.1.1.1", "1.1.1.1")


def test_memory_stays_bounded_under_a_spray_of_names() -> None:
    throttle = LoginThrottle(max_keys=100, clock=Clock())
    for index in range(10_000):
        throttle.attempt(f"user{index}", f"address:10.0.{index // 256}.{index % 256}", "10.0.0.1")
    assert len(throttle._pairs) <= 100 and len(throttle._unknown) <= 100
