"""The Vietnamese sort key: a table of pairs that must come in this order, and the demo's provinces."""

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.collation import sorted_by_name, vietnamese_key

# (earlier, later): each pair differs in one thing the order has to get right.
BEFORE = [
    ("D", "Đ"),                            # đ is a letter of its own, after d ...
    ("Đắk Lắk", "Gia Lai"),                # ... not after z, as byte order has it (U+0110)
    ("Dương", "Định"),
    ("a", "ă"), ("ă", "â"), ("â", "b"),    # a ă â
    ("e", "ê"), ("ê", "g"),
    ("o", "ô"), ("ô", "ơ"), ("ơ", "p"),
    ("u", "ư"), ("ư", "v"),
    ("Ấp Bắc", "Yên Bái"),                 # Ấ is â, not after y
    ("ba", "bà"), ("bà", "bả"), ("bả", "bã"), ("bã", "bá"), ("bá", "bạ"),  # tones in dictionary order
    ("bạ", "bác"),                         # tones only decide between otherwise equal names
    ("Hà Tĩnh", "Hải Phòng"),              # a word ends before a longer one goes on
    ("an", "Ao"), ("An", "ao"),            # case does not decide the order ...
    ("Ba", "bà"),                          # ... nor does it outrank a tone
    ("Xã 2", "Xã 10"),                     # numbers by value
    ("Điểm cầu A", "Điểm cầu B"),
    ("Hà Nam", "Hàm Yên"),                 # a space before a letter
    ("Trà Vinh", "Tuyên Quang"),           # letter by letter: tr is t then r
]


@pytest.mark.parametrize(("earlier", "later"), BEFORE)
def test_vietnamese_order(earlier: str, later: str) -> None:
    assert vietnamese_key(earlier) < vietnamese_key(later)
    assert sorted([later, earlier], key=vietnamese_key) == [earlier, later]


@pytest.mark.parametrize("text", ["Đắk Lắk", "Thừa Thiên Huế", "Bà Rịa – Vũng Tàu", "Quảng Ngãi"])
def test_composed_and_decomposed_text_sort_alike(text: str) -> None:
    nfc, nfd = unicodedata.normalize("NFC", text), unicodedata.normalize("NFD", text)
    assert vietnamese_key(nfc)[:3] == vietnamese_key(nfd)[:3]


@pytest.mark.parametrize(("one", "other"), [("an", "An"), ("Hà  Nội", "Hà Nội"), (" Huế", "Huế")])
def test_case_and_spacing_are_not_an_order(one: str, other: str) -> None:
    assert vietnamese_key(one)[:2] == vietnamese_key(other)[:2]


def test_the_order_is_total() -> None:
    names = ["an", "An", "AN", "ăn"]
    assert sorted(names, key=vietnamese_key) == sorted(reversed(names), key=vietnamese_key)


def test_the_pilot_provinces_in_alphabetical_order() -> None:
    class Point:
        def __init__(self, name: str) -> None:
            self.name = name

    names = ["Hải Phòng", "Thái Nguyên", "Tuyên Quang", "Sơn La", "Hà Tĩnh", "Đắk Lắk", "Bình Định", "Cần Thơ",
             "Bình Dương"]
    ordered = [point.name for point in sorted_by_name(Point(f"Điểm cầu {name}") for name in names)]
    assert ordered == [f"Điểm cầu {name}" for name in [
        "Bình Dương", "Bình Định", "Cần Thơ", "Đắk Lắk", "Hà Tĩnh", "Hải Phòng", "Sơn La", "Thái Nguyên",
        "Tuyên Quang"]]


@given(st.text(alphabet="aăâbcdđeêghiklmnoôơpqrstuưvxyAĂÂĐEÊOÔƠUƯ àáảãạ\u0300\u0301\u0303\u0309\u0323\u0306\u0302\u031b"
               "0123456789 \t.-_fjwzßΩ٣", max_size=20))
def test_the_cached_path_gives_the_full_key(text: str) -> None:
    from server.collation import _full_key

    assert vietnamese_key(text) == _full_key(text)
