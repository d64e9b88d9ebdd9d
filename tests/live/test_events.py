"""Events are plain data: every kind survives a round trip through JSON, ids are unique."""

from __future__ import annotations

import dataclasses
import json
import typing
from datetime import UTC, datetime

import pytest

from server.live import events as ev

WHO = ev.ParticipantRef("point:3", ev.LiveRole.HALL, 12, 3, "Cần Thơ")
SAMPLE = {
    str: "x", int: 3, bool: True, float: 1.5, datetime: datetime(2026, 12, 2, tzinfo=UTC),
    ev.ParticipantRef: WHO,
}


def sample(cls: type[ev.Event]) -> ev.Event:
    hints = typing.get_type_hints(cls)
    values = {}
    for field in dataclasses.fields(cls):
        if field.name in ("id", "at", "session_id"):
            continue
        hint = hints[field.name]
        choices = [arg for arg in (hint, *typing.get_args(hint)) if arg in SAMPLE]
        if field.name in ("reason",):
            values[field.name] = "dropped"
        elif field.name in ("source",):
            values[field.name] = "speaker"
        elif field.name in ("endpoint_kind",):
            values[field.name] = "whep"
        else:
            values[field.name] = SAMPLE[choices[0]] if choices else None
    return ev.make(cls, session_id=5, **values)


@pytest.mark.parametrize("cls", list(ev.EVENT_TYPES.values()), ids=list(ev.EVENT_TYPES))
def test_every_event_kind_round_trips_through_json(cls: type[ev.Event]) -> None:
    event = sample(cls)
    text = json.dumps(ev.to_dict(event))
    assert ev.from_dict(json.loads(text)) == event


def test_kinds_are_unique_and_unknown_ones_are_refused() -> None:
    assert len(ev.EVENT_TYPES) == len({cls.kind for cls in ev.EVENT_TYPES.values()})
    with pytest.raises(ValueError):
        ev.from_dict({"kind": "teleported"})
    with pytest.raises(ValueError):
        ev.from_dict({"kind": "hand_raised", "id": "a", "at": "2026-12-02T00:00:00+00:00"})


def test_ids_are_unique_and_times_are_utc() -> None:
    made = [ev.make(ev.SessionChanged, session_id=1) for _ in range(1000)]
    assert len({event.id for event in made}) == 1000
    assert all(event.at.tzinfo is not None for event in made)


def test_the_hall_key_is_spelled_in_one_place() -> None:
    assert ev.hall_key(7) == "point:7" and ev.user_key(7) == "user:7"
