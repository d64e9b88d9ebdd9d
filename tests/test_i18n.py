"""Every visible string is translated: the Vietnamese catalogue covers every message id in use."""

import json
import re
from pathlib import Path

import pytest

from server.attendance import export
from server.auth.roles import Role
from server.i18n import CATALOGUE_DIR, CODE_MESSAGES, Catalogues, error_messages
from server.storage.models import UnitLevel
from server.live.lifecycle import SessionStatus

TEMPLATES = Path(__file__).resolve().parent.parent / "web" / "templates"
SERVER = Path(__file__).resolve().parent.parent / "server"
# _("...") or _('...') with a literal first argument (Jinja and Python alike).
CALL = re.compile(r"""\b_\(\s*(?P<q>["'])(?P<text>(?:\\.|(?!(?P=q)).)*)(?P=q)""", re.S)


# Python modules that translate texts themselves (exports, the report command).
TRANSLATING_MODULES = [SERVER / "views" / "reports.py", SERVER / "views" / "recordings.py", SERVER / "cli.py"]


def message_ids() -> set[str]:
    found: set[str] = set()
    for path in [*TEMPLATES.glob("*.html"), *TRANSLATING_MODULES]:
        for match in CALL.finditer(path.read_text(encoding="utf-8")):
            found.add(match.group("text"))
    return found | set(CODE_MESSAGES.values()) | error_messages() | set(export.MESSAGES)


def test_templates_use_the_translation_function() -> None:
    assert len(message_ids()) > 100


def test_every_message_has_a_vietnamese_translation() -> None:
    catalogue = json.loads((CATALOGUE_DIR / "vi.json").read_text(encoding="utf-8"))
    missing = sorted(message_ids() - set(catalogue))
    assert missing == [], f"{len(missing)} messages lack a Vietnamese translation"


def test_translations_keep_their_placeholders() -> None:
    catalogue = json.loads((CATALOGUE_DIR / "vi.json").read_text(encoding="utf-8"))
    for message, translation in catalogue.items():
        assert set(re.findall(r"\{(\w+)\}", message)) == set(re.findall(r"\{(\w+)\}", translation)), message


@pytest.mark.parametrize("name", ["Scheduled", "Live", "Ended", "Cancelled",
                                  "Administrator", "Speaker", "Operator", "Member", "Central", "Province", "Commune"])
def test_domain_names_are_translated(name: str) -> None:
    assert Catalogues().gettext("vi", name) != name


def test_enumerations_have_names_to_show() -> None:
    # The pages show these values through the catalogue: keep the lists in step.
    assert {s.value for s in SessionStatus} == {"scheduled", "live", "ended", "cancelled"}
    assert {r.value for r in Role} == {"admin", "speaker", "operator", "member"}
    assert {u.value for u in UnitLevel} == {"central", "province", "commune"}


def test_english_is_the_message_itself_and_placeholders_fill() -> None:
    catalogues = Catalogues()
    assert catalogues.gettext("en", "Times are in {zone}.", zone="Asia/Ho_Chi_Minh") == "Times are in Asia/Ho_Chi_Minh."
    assert catalogues.gettext("xx", "Sessions") == "Sessions"
