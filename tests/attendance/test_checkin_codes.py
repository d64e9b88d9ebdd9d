"""Check-in codes, QR tokens and scan tickets (server/attendance/checkin.py), on a clock moved by hand."""

from __future__ import annotations

import pytest

from server.attendance.checkin import TICKET_SECONDS, CheckinCodes, CheckinError, Hall, Scan, looks_like_code
from server.auth.tokens import issue_token

SECRET = "test-secret-" + "x" * 40
WINDOW = 45
HALL = Hall(session_id=7, point_id=3)


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    # The start of a window: a move of WINDOW seconds is exactly one rotation.
    return Clock(1_800_000_000 // WINDOW * WINDOW)


@pytest.fixture
def codes(clock: Clock) -> CheckinCodes:
    return CheckinCodes(SECRET, WINDOW, clock=clock)


def refusal(call: object, *args: object) -> str:
    with pytest.raises(CheckinError) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value.code


def test_window_is_unix_time_over_the_window_length(codes: CheckinCodes, clock: Clock) -> None:
    assert codes.window() == int(clock.now // WINDOW)
    issued = codes.issue(HALL)
    assert issued.rotates_at == (issued.window + 1) * WINDOW
    assert issued.expires_at == issued.rotates_at + WINDOW


def test_same_window_same_code_and_six_digits(codes: CheckinCodes, clock: Clock) -> None:
    first = codes.issue(HALL)
    clock.now += WINDOW - 1
    again = codes.issue(HALL)
    assert first.code == again.code and first.token == again.token
    assert len(first.code) == 6 and first.code.isdigit()


def test_codes_rotate_each_window(codes: CheckinCodes, clock: Clock) -> None:
    seen = set()
    for _ in range(20):
        seen.add(codes.issue(HALL).code)
        clock.now += WINDOW
    assert len(seen) >= 19  # a repeat among 20 six-digit codes is possible, not likely


def test_codes_differ_by_session_point_and_secret(codes: CheckinCodes, clock: Clock) -> None:
    window = codes.window()
    code = codes.code(HALL, window)
    assert codes.code(Hall(8, 3), window) != code
    assert codes.code(Hall(7, 4), window) != code
    assert CheckinCodes("another-secret-" + "y" * 40, WINDOW, clock=clock).code(HALL, window) != code


def test_typed_code_accepted_in_its_window_and_the_next_only(codes: CheckinCodes, clock: Clock) -> None:
    code = codes.issue(HALL).code
    assert codes.match_code(code, [HALL]) == HALL
    clock.now += WINDOW  # rotated: the previous code is still accepted
    assert codes.match_code(code, [HALL]) == HALL
    clock.now += WINDOW  # two windows back
    assert refusal(codes.match_code, code, [HALL]) == "expired_code"


def test_typed_code_of_another_hall_or_garbage_is_wrong(codes: CheckinCodes) -> None:
    other = codes.issue(Hall(7, 4)).code
    assert refusal(codes.match_code, other, [HALL]) in ("wrong_code",)
    assert refusal(codes.match_code, "12345", [HALL]) == "wrong_code"
    assert refusal(codes.match_code, "abcdef", [HALL]) == "wrong_code"
    assert refusal(codes.match_code, codes.issue(HALL).code, []) == "wrong_code"


def test_colliding_codes_prefer_the_home_hall_or_are_ambiguous(codes: CheckinCodes, clock: Clock) -> None:
    # Find two halls that show the same code in the same window (a birthday search over points).
    window = codes.window()
    by_code: dict[str, Hall] = {}
    for point in range(1, 20_000):
        hall = Hall(7, point)
        code = codes.code(hall, window)
        if code in by_code:
            first, second = by_code[code], hall
            break
        by_code[code] = hall
    else:
        pytest.fail("no collision among 20,000 halls")
    assert codes.match_code(code, [first, second], home=[second]) == second
    assert refusal(codes.match_code, code, [first, second]) == "ambiguous_code"
    assert refusal(codes.match_code, code, [first, second], [Hall(7, 999_999)]) == "ambiguous_code"


def test_qr_token_names_its_hall_and_has_the_same_grace(codes: CheckinCodes, clock: Clock) -> None:
    token = codes.issue(HALL).token
    scan = codes.read_token(token)
    assert scan.hall == HALL and scan.scanned_at == clock.now
    clock.now += WINDOW
    assert codes.read_token(token).hall == HALL
    clock.now += WINDOW
    assert refusal(codes.read_token, token) == "expired_code"


def test_a_token_from_the_future_is_refused(codes: CheckinCodes, clock: Clock) -> None:
    future = codes.token(HALL, codes.window() + 1)
    assert refusal(codes.read_token, future) == "wrong_code"


@pytest.mark.parametrize("change", [
    lambda t: t.replace("c1.7.", "c1.8.", 1),  # another session
    lambda t: t.replace(".3.", ".4.", 1),  # another point
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # the signature
    lambda t: "c2" + t[2:],  # the purpose
    lambda t: t + ".1",
    lambda t: "",
    lambda t: "x" * 5000,
])
def test_tampered_tokens_are_refused(codes: CheckinCodes, change: object) -> None:
    token = codes.issue(HALL).token
    assert refusal(codes.read_token, change(token)) == "wrong_code"  # type: ignore[operator]


def test_a_token_of_another_secret_is_refused(codes: CheckinCodes, clock: Clock) -> None:
    other = CheckinCodes("another-secret-" + "y" * 40, WINDOW, clock=clock)
    assert refusal(codes.read_token, other.issue(HALL).token) == "wrong_code"


def test_a_sign_in_token_is_not_a_checkin_token(codes: CheckinCodes, clock: Clock) -> None:
    login = issue_token(SECRET, user_id=5, token_version=0, ttl_seconds=600, now=clock.now)
    assert refusal(codes.read_token, login) == "wrong_code"
    assert refusal(codes.read_ticket, login) == "wrong_code"


def test_a_ticket_outlives_rotations_for_ten_minutes(codes: CheckinCodes, clock: Clock) -> None:
    scan = codes.read_token(codes.issue(HALL).token)
    ticket = codes.ticket(scan)
    clock.now += TICKET_SECONDS - 1  # many rotations later
    assert codes.read_ticket(ticket) == Scan(HALL, float(int(scan.scanned_at)))
    clock.now += 2
    assert refusal(codes.read_ticket, ticket) == "expired_code"


def test_tokens_and_tickets_are_not_interchangeable(codes: CheckinCodes) -> None:
    token = codes.issue(HALL).token
    ticket = codes.ticket(codes.read_token(token))
    assert refusal(codes.read_ticket, token) == "wrong_code"
    assert refusal(codes.read_token, ticket) == "wrong_code"
    # Same numbers, the other prefix: the keys differ too.
    assert refusal(codes.read_ticket, "s1" + token[2:]) == "wrong_code"


def test_looks_like_code() -> None:
    assert looks_like_code("123456") and looks_like_code("123 456")
    assert not looks_like_code("c1.1.2.3.abc") and not looks_like_code("12345")
