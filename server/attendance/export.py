"""Attendance spreadsheets: CSV (UTF-8 with BOM) and XLSX, the rule printed in each.

Pure: rows come in as mappings of plain values, labels through a ``gettext``
callable (English message ids, translated by the caller's catalogue), and
bytes go out. Every text cell that a spreadsheet would read as a formula is
neutralised, so a member called ``=HYPERLINK(...)`` stays a name.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from server.attendance.rule import CreditRule

Gettext = Callable[..., str]

BOM = "\ufeff"
# What Excel, LibreOffice and Google Sheets start a formula (or DDE) with.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Column:
    key: str
    label: str  # an English message id
    width: int  # characters, as a person would set it in the spreadsheet


# The member table, in order: the interface other programs read (keep the keys).
MEMBER_COLUMNS = (
    Column("username", "Username", 16),
    Column("full_name", "Full name", 28),
    Column("unit", "Unit", 24),
    Column("bridge_point", "Bridge point", 24),
    Column("live_seconds", "Live seconds", 12),
    Column("replay_seconds", "Replay seconds", 12),
    Column("credited_seconds", "Credited seconds", 13),
    Column("status", "Result", 14),
    Column("late_minutes", "Late (minutes)", 11),
    Column("early_minutes", "Left early (minutes)", 11),
    Column("checked_in", "Checked in", 11),
    Column("online_seconds", "Online seconds", 12),
    Column("hall_seconds", "Hall seconds", 12),
    Column("correction", "Correction", 48),
)

STATUS_LABELS = {"attended": "Attended", "partial": "Partial", "absent": "Absent"}

# The per-point summary of a session: one row per invited bridge point.
POINT_COLUMNS = (
    Column("name", "Bridge point", 30),
    Column("unit", "Unit", 24),
    Column("expected", "Expected", 11),
    Column("checked_in", "Checked in", 13),
    Column("attended", "Attended", 11),
    Column("partial", "Partial", 11),
    Column("absent", "Absent", 11),
    Column("attended_percent", "Attended %", 13),
    Column("connected_minutes", "Hall connected (min)", 16),
    Column("talk_minutes", "Talk time (min)", 14),
)
POINTS_SHEET = "Điểm cầu - Points"
RULE_SHEET = "Quy tắc - Rule"  # a sheet title may not hold "/": the nearest to "Quy tắc / Rule"


def rule_lines(rule: CreditRule, _: Gettext) -> list[str]:
    """The credit rule in words, as every report prints it."""
    return [
        _("Attended: credited for at least {percent}% of the live duration.", percent=rule.attended_percent),
        _("Partial: credited for some of the live duration, less than {percent}%.", percent=rule.attended_percent),
        _("Absent: not credited at all."),
        _("Credited time: live time online or in a checked-in hall that was connected, and the parts of "
          "the lecture replayed from the recording, each moment counted once."),
        _("Late arrival is flagged after {minutes} minutes; early leave more than {early} minutes before the end.",
          minutes=rule.late_after_minutes, early=rule.early_before_minutes),
    ]


def neutralise(value: Any) -> Any:
    """A text cell that cannot run as a formula (prefixed with an apostrophe); other values as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def correction_text(correction: Mapping[str, Any] | None, _: Gettext) -> str:
    if not correction:
        return ""
    parts = []
    if correction.get("status"):
        parts.append(_(STATUS_LABELS.get(correction["status"], correction["status"])))
    if correction.get("credited_seconds") is not None:
        parts.append(_("{seconds} s credited", seconds=correction["credited_seconds"]))
    what = ", ".join(parts)
    return _("Corrected by {by} at {at}: {what}. Reason: {reason}", by=correction.get("by", ""),
             at=correction.get("at", ""), what=what, reason=correction.get("reason", ""))


def member_cells(row: Mapping[str, Any], _: Gettext,
                 neutral: Callable[[Any], Any] | None = None) -> list[Any]:
    """One member's row, in MEMBER_COLUMNS order, with texts translated and neutralised (``neutral``:
    how; by default the apostrophe of CSV)."""
    neutral = neutral or neutralise
    cells: list[Any] = []
    for column in MEMBER_COLUMNS:
        value = row.get(column.key)
        if column.key == "status":
            value = _(STATUS_LABELS.get(value, str(value)))
        elif column.key == "checked_in":
            value = _("Yes") if value else _("No")
        elif column.key == "correction":
            value = correction_text(value, _)
        cells.append(neutral(value if value is not None else ""))
    return cells


def csv_bytes(rows: Iterable[Mapping[str, Any]], _: Gettext, *, heading: Sequence[str] = (),
              rule: CreditRule | None = None) -> bytes:
    """The member table as CSV: a BOM (Excel then reads UTF-8), the header, the rows, then the rule.

    The first line is the header, so a program reads the file as a table; the
    rule follows after an empty line, each line a one-cell row.
    """
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([_(c.label) for c in MEMBER_COLUMNS])
    for row in rows:
        writer.writerow(member_cells(row, _))
    footer = [*heading, *(rule_lines(rule, _) if rule is not None else [])]
    if footer:
        writer.writerow([])
        for line in footer:
            writer.writerow([neutralise(line)])
    return out.getvalue().encode("utf-8")


def xlsx_bytes(rows: Iterable[Mapping[str, Any]], _: Gettext, *, title: str, heading: Sequence[str] = (),
               rule: CreditRule | None = None, points: Sequence[Mapping[str, Any]] = ()) -> bytes:
    """The member table as an XLSX workbook: a frozen header row, set widths, the rule on a second sheet.

    Written in openpyxl's write-only mode: 10,000 rows stream out without a
    cell object each.
    """
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    book = Workbook(write_only=True)
    sheet = book.create_sheet(sheet_title(title))
    sheet.freeze_panes = "C2"  # the header, and who each row is, stay in view
    for index, column in enumerate(MEMBER_COLUMNS, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = column.width
    bold = Font(bold=True, color="FFFFFF")
    fill = PatternFill("solid", fgColor="16284A")
    wrap = Alignment(wrap_text=True, vertical="top")
    header = []
    for column in MEMBER_COLUMNS:
        cell = WriteOnlyCell(sheet, value=_(column.label))
        cell.font, cell.fill, cell.alignment = bold, fill, wrap
        header.append(cell)
    sheet.append(header)
    def as_text(value: Any) -> Any:
        # In a workbook a cell can say it is text: a name beginning with "=" shows as typed, no apostrophe.
        if isinstance(value, str) and value.startswith(_FORMULA_START):
            cell = WriteOnlyCell(sheet, value=value)
            cell.data_type = "s"
            return cell
        return value

    for row in rows:
        sheet.append(member_cells(row, _, as_text))

    if points:
        # Per bridge point (a province's hall): the figures a province is judged by.
        summary = book.create_sheet(POINTS_SHEET)
        summary.freeze_panes = "B2"
        for index, column in enumerate(POINT_COLUMNS, start=1):
            summary.column_dimensions[get_column_letter(index)].width = column.width
        top = []
        for column in POINT_COLUMNS:
            cell = WriteOnlyCell(summary, value=_(column.label))
            cell.font, cell.fill, cell.alignment = bold, fill, wrap
            top.append(cell)
        summary.append(top)
        for point in points:
            values = {**point, "connected_minutes": round(point.get("connected_seconds", 0) / 60),
                      "talk_minutes": round(point.get("talk_seconds", 0) / 60)}
            summary.append([as_text(values.get(column.key, "")) for column in POINT_COLUMNS])

    rules = book.create_sheet(RULE_SHEET)
    rules.column_dimensions["A"].width = 110
    heading_font = Font(bold=True, size=12)
    first = WriteOnlyCell(rules, value=_("Credit rule"))
    first.font = heading_font
    rules.append([first])
    for line in [*(rule_lines(rule, _) if rule is not None else []), "", *heading]:
        rules.append([neutralise(line)])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def heading_lines(report: Any, _: Gettext, zone: tzinfo) -> list[str]:
    """What a spreadsheet says about the session besides its rows: which, when, when made."""
    def when(value: datetime | None) -> str:
        return value.astimezone(zone).strftime("%d/%m/%Y %H:%M") if value else "—"

    return [
        _("Session: {title} (no. {id})", title=report.title, id=report.session_id),
        _("Live from {start} to {end} ({zone})", start=when(report.live_start), end=when(report.live_end),
          zone=str(zone)),
        _("Report made at {at}", at=when(report.generated_at)),
    ]


def file_names(report: Any, scheduled_start: datetime, zone: tzinfo, extension: str) -> tuple[str, str]:
    """(ASCII file name, UTF-8 file name): the session's id and date, then its title."""
    day = (report.live_start or scheduled_start).astimezone(zone).strftime("%Y-%m-%d")
    stem = f"attendance-{report.session_id}-{day}"
    plain, full = ascii_name(report.title), unicode_name(report.title)
    return (f"{stem}-{plain}.{extension}" if plain else f"{stem}.{extension}",
            f"{stem}-{full}.{extension}" if full else f"{stem}.{extension}")


def sheet_title(text: str) -> str:
    """A valid worksheet title: at most 31 characters, none of []:*?/\\."""
    cleaned = re.sub(r"[\[\]:*?/\\]", " ", text).strip() or "Report"
    return cleaned[:31]


def ascii_name(text: str) -> str:
    """A file name part in plain ASCII: Vietnamese letters without their marks, đ as d, the rest as hyphens."""
    flat = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
    flat = "".join(ch for ch in flat if not unicodedata.combining(ch))
    return re.sub(r"[^A-Za-z0-9]+", "-", flat).strip("-").lower()[:60]


def unicode_name(text: str) -> str:
    """A file name part that keeps the Vietnamese letters but no separator or control character."""
    cleaned = re.sub(r"[\x00-\x1f\x7f/\\:*?\"<>|]+", " ", text)
    return re.sub(r"\s+", "-", cleaned.strip())[:80]


# Messages built in Python (not in templates): listed for the catalogue test.
MESSAGES = (
    *(c.label for c in MEMBER_COLUMNS), *STATUS_LABELS.values(), "Yes", "No", "Credit rule",
    "{seconds} s credited", "Corrected by {by} at {at}: {what}. Reason: {reason}",
    "Attended: credited for at least {percent}% of the live duration.",
    "Partial: credited for some of the live duration, less than {percent}%.",
    "Absent: not credited at all.",
    "Credited time: live time online or in a checked-in hall that was connected, and the parts of "
    "the lecture replayed from the recording, each moment counted once.",
    "Late arrival is flagged after {minutes} minutes; early leave more than {early} minutes before the end.",
    "Session: {title} (no. {id})", "Live from {start} to {end} ({zone})", "Report made at {at}", "Attendance",
)
