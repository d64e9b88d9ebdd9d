"""Translation: Vietnamese first, English too.

Message ids are the English text; ``web/locales/<locale>.json`` maps them to
the translation.  English needs no catalogue entry for a message whose id is
already the English text, but may override one.  A message missing from the
Vietnamese catalogue is a test failure (tests/test_i18n.py), not a silent
English fallback in production.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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
    # Check-in (server/views/checkins.py, server/storage/checkins.py)
    "wrong_code": "This check-in code is not right.",
    "expired_code": "This check-in code has expired: use the one on the screen now.",
    "ambiguous_code": "Two halls show this code now: scan the QR code instead.",
    "rate_limited": "Too many wrong codes: wait a few minutes.",
    "not_member": "Only members check in; operators mark members present on the check-in list.",
    "session_not_open": "Check-in is closed: the session has ended or was cancelled.",
    "other_point": "This is at another bridge point: an operator acts only at their own.",
    "already_removed": "This check-in was already removed.",
    "already_checked_out": "This check-in is already closed.",
    "not_started": "The session has not started yet: mark the member present from now.",
    "checkin_conflict": "The check-in changed meanwhile: try again.",
    "ended_admin_only": "The session has ended: only an administrator corrects its attendance.",
    "reason_required": "Give the reason: a change after the end is a correction.",
    "not_date": "Enter a date.",
    "range_too_long": "Choose a period of at most three years.",
    "not_live_yet": "The session has not gone live: there is nothing to correct yet.",
    # Shared by check-in marking and corrections.
    "unknown_user": "There is no account with this username.",
    "not_a_member": "Only members have an attendance result.",
    "nothing_to_correct": "Choose a result or enter the credited minutes.",
}




@dataclass(frozen=True)
class ErrorPage:
    """What an error page says: a heading, why, and what to do (English message ids)."""

    heading: str
    explanation: str
    advice: str = ""
    # A way on that fits the refusal better than the dashboard: (path, label).
    link: tuple[str, str] | None = None


_SESSIONS_LINK = ("/sessions", "See the sessions open to you")

# Error pages by error code (server/errors.py and where errors are raised):
# the page says why in the reader's language, whatever the code's status.
ERROR_PAGES = {
    # The three below answer a missing session and a hidden one alike (404): the page must not tell
    # whether a session exists to someone who may not see it.
    "not_invited": ErrorPage(
        "This session is not open to your bridge point",
        "Either there is no such session, or it is broadcast only to the bridge points the administrator "
        "invited, and yours is not among them.",
        "If your hall should take part, ask the administrator to add your bridge point to the session's "
        "invitations, then open the page again.",
        _SESSIONS_LINK),
    "other_units": ErrorPage(
        "This session is not open to your unit",
        "Either there is no such session, or it is shown in the halls of other units: members see only the "
        "sessions of their own unit and of the units above it.",
        "If you should attend, ask your unit's administrator to invite a bridge point of your unit, or to "
        "move your account to the right unit.",
        _SESSIONS_LINK),
    "not_speaker": ErrorPage(
        "This session is not yours to present",
        "Either there is no such session, or another speaker presents it: a speaker sees and hosts only the "
        "sessions they are the speaker of.",
        "If you should present it, ask the administrator to make you the session's speaker.",
        _SESSIONS_LINK),
    "forbidden": ErrorPage(
        "Access denied",
        "Your account does not have permission to open this page.",
        "If you need it for your work, ask an administrator to change your account's role."),
    "csrf_failed": ErrorPage(
        "The form has expired",
        "For your security the form could not be accepted. Reload the page and try again."),
    "bad_origin": ErrorPage(
        "Request refused",
        "The request did not come from this site and was refused."),
    "unauthorized": ErrorPage(
        "Please sign in",
        "You need to sign in to see this page."),
    "token_expired": ErrorPage(
        "Please sign in again",
        "Your sign-in has expired."),
    "token_revoked": ErrorPage(
        "Please sign in again",
        "You were signed out: your password, role or account changed."),
    "not_found": ErrorPage(
        "Page not found",
        "The page you asked for does not exist or has been removed."),
    "method_not_allowed": ErrorPage(
        "Action not allowed",
        "This address does not accept this kind of request."),
    "payload_too_large": ErrorPage(
        "The file is too large",
        "Send a smaller file (at most 2 MB)."),
    "too_many_requests": ErrorPage(
        "Too many attempts",
        "Wait a moment and try again."),
    "internal_error": ErrorPage(
        "Something went wrong",
        "The server could not complete the request. Try again in a moment; if it keeps happening, tell the "
        "administrator."),
}

# When a code has no page of its own: by status.
STATUS_PAGES = {
    400: ErrorPage("The request is not valid", "Check what you entered and try again."),
    401: ERROR_PAGES["unauthorized"],
    403: ERROR_PAGES["forbidden"],
    404: ERROR_PAGES["not_found"],
    405: ERROR_PAGES["method_not_allowed"],
    409: ErrorPage("This action is not possible", "It conflicts with the current state of the data."),
    413: ERROR_PAGES["payload_too_large"],
    422: ErrorPage("The request is not valid", "Check what you entered and try again."),
    429: ERROR_PAGES["too_many_requests"],
    500: ERROR_PAGES["internal_error"],
}
OTHER_ERROR = ErrorPage("Something went wrong", "The request could not be completed.")


def error_page(code: str, status: int) -> tuple[ErrorPage, bool]:
    """The page for an error, and whether it is the code's own (else the status's)."""
    if code in ERROR_PAGES:
        return ERROR_PAGES[code], True
    if code in CODE_MESSAGES:
        # A rule of the data (a conflict, a validation code): its message says why.
        return ErrorPage("This action is not possible", CODE_MESSAGES[code]), True
    fallback = STATUS_PAGES.get(status) or (ERROR_PAGES["internal_error"] if status >= 500 else OTHER_ERROR)
    return fallback, False


def error_messages() -> set[str]:
    """Every message id the error pages may show (for the catalogue test)."""
    pages = [*ERROR_PAGES.values(), *STATUS_PAGES.values(), OTHER_ERROR]
    found = {text for page in pages for text in (page.heading, page.explanation, page.advice) if text}
    found |= {page.link[1] for page in pages if page.link}
    return found | {"This action is not possible"}


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

    def error_page(self, code: str, status: int) -> dict[str, Any]:
        """An error page's texts, translated: heading, explanation, advice, link, and
        ``specific`` (false when only the status was known: the page then shows the
        server's technical message too)."""
        page, specific = error_page(code, status)
        return {
            "heading": self(page.heading),
            "explanation": self(page.explanation),
            "advice": self(page.advice) if page.advice else "",
            "link": (page.link[0], self(page.link[1])) if page.link else None,
            "specific": specific,
        }


def pick_locale(requested: str | None, default: str) -> str:
    return requested if requested in LOCALES else default
