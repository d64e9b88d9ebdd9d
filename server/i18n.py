"""Translation: Vietnamese first, English too.

Message ids are the English text; ``web/locales/<locale>.json`` maps them to
the translation.  English needs no catalogue entry for a message whose id is
already the English text, but may override one.  A message missing from the
Vietnamese catalogue is a test failure (tests/test_i18n.py), not a silent
English fallback in production.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LOCALES = ("vi", "en")
LOCALE_NAMES = {"vi": "Tiếng Việt", "en": "English"}
CATALOGUE_DIR = Path(__file__).resolve().parent.parent / "web" / "locales"

# Error codes (server/errors.py, server/validation.py) as the English message
# a page shows for them; translated like any other message.
CODE_MESSAGES = {
    "required": "This field is required.",
    "too_short": "This value is too short.",
    "too_long": "This value is too long.",
    "invalid_choice": "Choose one of the offered values.",
    "invalid_format": "This value has the wrong format.",
    "not_integer": "Enter a whole number.",
    "not_datetime": "Enter a date and time.",
    "timezone_required": "Enter a date and time.",
    "out_of_range": "This date is out of range.",
    "not_id_list": "Choose from the list.",
    "unknown_field": "Unexpected field.",
    "end_before_start": "The end must be after the start.",
    "not_a_speaker": "Choose an active speaker.",
    "unknown_point": "Choose an existing bridge point.",
    "hub_invited": "The hub hosts the session: invite halls.",
    "inactive_point": "An invited bridge point is inactive.",
    "unknown_unit": "Choose an existing unit.",
    "invalid_parent": "Choose a parent unit of the level above.",
    "no_parent_allowed": "A central unit has no parent.",
    "slug_taken": "This short name is already used.",
    "username_taken": "This username is already used.",
    "hub_exists": "There is already a hub bridge point.",
    "unit_in_use": "This unit still has child units, bridge points or users.",
    "point_in_use": "This bridge point is invited to sessions or has operators: deactivate it instead.",
    "unit_has_children": "A unit with child units cannot change level.",
    "invalid_status": "This is not possible in the session's current status.",
    "session_live": "A live session keeps its schedule, speaker and invitations.",
    "password_too_short": "The password must have at least 8 characters.",
    "wrong_password": "The current password is not correct.",
    "last_admin": "At least one active administrator must remain.",
    "taken": "This value is already used.",
    "duplicate": "This value repeats an earlier row.",
    "not_utf8": "The file must be UTF-8 encoded CSV.",
    "missing_columns": "Columns are missing.",
    "malformed_csv": "The file is not valid CSV.",
    "too_many_rows": "The file has too many rows.",
    "extra_values": "A row has more values than the header.",
    "empty": "The file has no rows.",
    "not_boolean": "Choose yes or no.",
    "invalid_characters": "This value contains characters that are not allowed.",
    "too_small": "This number is too small.",
    "too_large": "This number is too large.",
    "too_many": "Too many items were chosen.",
    "not_list": "Choose from the list.",
    "not_string": "Enter text.",
    "null": "This field is required.",
    "not_an_object": "The input is not valid.",
}


class Catalogues:
    """The loaded message catalogues."""

    def __init__(self, directory: Path = CATALOGUE_DIR) -> None:
        self.messages: dict[str, dict[str, str]] = {}
        for locale in LOCALES:
            path = directory / f"{locale}.json"
            self.messages[locale] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def gettext(self, locale: str, message: str, **values: Any) -> str:
        text = self.messages.get(locale, {}).get(message, message)
        return text.format(**values) if values else text

    def translator(self, locale: str) -> Translator:
        return Translator(self, locale)


class Translator:
    """``_("text", name=value)`` bound to one locale (what templates call)."""

    def __init__(self, catalogues: Catalogues, locale: str) -> None:
        self.catalogues = catalogues
        self.locale = locale

    def __call__(self, message: str, **values: Any) -> str:
        return self.catalogues.gettext(self.locale, message, **values)

    def code(self, code: str) -> str:
        """The translated message for an error code."""
        return self(CODE_MESSAGES.get(code, "This value is not valid."))


def pick_locale(requested: str | None, default: str) -> str:
    return requested if requested in LOCALES else default
