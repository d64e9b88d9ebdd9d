"""Vietnamese alphabetical order: one sort key for every list of names.

SQLite's ``ORDER BY name`` compares bytes, which puts "Đắk Lắk" after every
other province ("Đ" is U+0110) and "Ấp" after "Yên"; PostgreSQL's order
depends on the server's locale.  Lists of units, bridge points and people are
short (tens to hundreds of rows), so they are sorted in Python with
:func:`vietnamese_key` and read the same in pages, the JSON API and the CLI.

The order is the Vietnamese alphabet, letter by letter,

    a ă â b c d đ e ê g h i k l m n o ô ơ p q r s t u ư v x y

with the Latin letters Vietnamese does not use (f j w z) at their Latin
places.  Tones are a secondary level, in dictionary order (none, huyền, hỏi,
ngã, sắc, nặng): they only decide between names that are otherwise the same,
so "ba" < "bà" < "bá" < "bác".  Case is ignored except as a last tie-break,
so the order is total and stable.  Runs of digits compare by value
("Xã 2" before "Xã 10").
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Protocol, TypeVar

ALPHABET = "aăâbcdđeêfghijklmnoôơpqrstuưvwxyz"

# The marks that make a letter of its own (ă â ê ô ơ ư) after NFD.
_BREVE, _CIRCUMFLEX, _HORN = "\u0306", "\u0302", "\u031b"
_LETTER_MARKS = {_BREVE, _CIRCUMFLEX, _HORN}
# Tone marks, in dictionary order: huyền, hỏi, ngã, sắc, nặng (0 is no tone).
_TONES = {"\u0300": 1, "\u0309": 2, "\u0303": 3, "\u0301": 4, "\u0323": 5}

_LETTER_RANK = {letter: rank for rank, letter in enumerate(ALPHABET)}

# Primary weight classes: separators sort before digits, digits before
# letters, letters of other scripts after the Vietnamese alphabet.
_SPACE, _PUNCTUATION, _NUMBER, _LETTER, _OTHER = range(5)

Key = tuple[tuple[tuple[int, int], ...], tuple[int, ...], tuple[int, ...], str]


def _letters(text: str) -> Iterable[tuple[str, str]]:
    """(base character, its combining marks) for each character of ``text`` in NFD."""
    base = ""
    marks = ""
    for char in unicodedata.normalize("NFD", text):
        if unicodedata.combining(char) and base:
            marks += char
            continue
        if base:
            yield base, marks
        base, marks = char, ""
    if base:
        yield base, marks


# One character's weights (primary, tone, case), computed once: a report sorts 10,000 names.
_WEIGHTS: dict[str, tuple[tuple[int, int], int, int]] = {}


def vietnamese_key(text: str) -> Key:
    """A sort key putting ``text`` in Vietnamese alphabetical order (see the module docstring).

    Text whose NFC form has no loose combining mark (every name typed on a
    Vietnamese keyboard) is weighed a character at a time from a cache; any
    other text takes the full path, which gives the same key.
    """
    stripped = text.strip()
    composed = unicodedata.normalize("NFC", stripped)
    primary: list[tuple[int, int]] = []
    secondary: list[int] = []
    tertiary: list[int] = []
    digits = ""
    for char in composed:
        if "0" <= char <= "9":
            digits += char
            continue
        if digits:
            primary.append((_NUMBER, int(digits)))
            secondary.append(0)
            tertiary.append(0)
            digits = ""
        if char.isspace():
            if not (primary and primary[-1] == (_SPACE, 0)):
                primary.append((_SPACE, 0))
                secondary.append(0)
                tertiary.append(0)
            continue
        weights = _WEIGHTS.get(char)
        if weights is None:
            if unicodedata.combining(char) or char.isdecimal():
                return _full_key(text)
            full = _full_key(char)
            if len(full[0]) != 1:
                return _full_key(text)
            weights = _WEIGHTS[char] = (full[0][0], full[1][0], full[2][0])
        primary.append(weights[0])
        secondary.append(weights[1])
        tertiary.append(weights[2])
    if digits:
        primary.append((_NUMBER, int(digits)))
        secondary.append(0)
        tertiary.append(0)
    return tuple(primary), tuple(secondary), tuple(tertiary), text


def _full_key(text: str) -> Key:
    """The key computed cluster by cluster from the NFD form: the definition the fast path follows."""
    primary: list[tuple[int, int]] = []
    secondary: list[int] = []
    tertiary: list[int] = []
    digits = ""

    def end_number() -> None:
        nonlocal digits
        if digits:
            primary.append((_NUMBER, int(digits)))
            secondary.append(0)
            tertiary.append(0)
            digits = ""

    for base, marks in _letters(text.strip()):
        if base.isdecimal() and base.isascii():
            digits += base
            continue
        end_number()
        lower = base.lower()
        if base.isspace():
            if primary and primary[-1] == (_SPACE, 0):
                continue  # runs of spaces count as one
            primary.append((_SPACE, 0))
            secondary.append(0)
            tertiary.append(0)
            continue
        letter = lower + "".join(mark for mark in (_BREVE, _CIRCUMFLEX, _HORN) if mark in marks)
        letter = unicodedata.normalize("NFC", letter)
        if letter in _LETTER_RANK:
            primary.append((_LETTER, _LETTER_RANK[letter]))
        elif lower in _LETTER_RANK:
            primary.append((_LETTER, _LETTER_RANK[lower]))  # a mark Vietnamese has no letter for
        elif base.isalpha():
            primary.append((_OTHER, ord(lower)))
        else:
            primary.append((_PUNCTUATION, ord(base)))
        tones = [_TONES[mark] for mark in marks if mark in _TONES]
        secondary.append(tones[0] if tones else 0)
        tertiary.append(1 if base != lower else 0)
    end_number()
    return tuple(primary), tuple(secondary), tuple(tertiary), text


class Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=Named)


def sorted_by_name(items: Iterable[N]) -> list[N]:
    """``items`` (units, bridge points: anything with a ``name``) in Vietnamese alphabetical order."""
    return sorted(items, key=lambda item: vietnamese_key(item.name))
