"""Spreadsheets: CSV that Excel reads as UTF-8 and never as formulas; XLSX a person can work with."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import openpyxl
import pytest

from server.attendance import export
from server.attendance.rule import CreditRule
from server.i18n import Catalogues

VI = Catalogues().translator("vi")
EN = Catalogues().translator("en")


def row(**values: object) -> dict[str, object]:
    base: dict[str, object] = {
        "username": "nguyen-van-a", "full_name": "Nguyễn Văn Ấn", "unit": "Đắk Lắk", "bridge_point": "Điểm cầu Đắk Lắk",
        "live_seconds": 3000, "replay_seconds": 0, "credited_seconds": 3000, "status": "attended", "late_minutes": 0,
        "early_minutes": 0, "checked_in": True, "online_seconds": 0, "hall_seconds": 3000, "correction": None,
    }
    return {**base, **values}


@pytest.mark.parametrize(("value", "expected"), [
    ("=SUM(A1:A9)", "'=SUM(A1:A9)"),
    ("+84 912", "'+84 912"),
    ("-1", "'-1"),
    ("@cmd", "'@cmd"),
    ("\tx", "'\tx"),
    ("\rx", "'\rx"),
    ("Nguyễn = An", "Nguyễn = An"),  # only a leading sign counts
    ("", ""),
    (42, 42),  # numbers stay numbers
    (-5, -5),
])
def test_neutralise(value: object, expected: object) -> None:
    assert export.neutralise(value) == expected


def test_csv_has_a_bom_the_header_first_and_vietnamese_round_trips() -> None:
    rows = [row(), row(username="=evil", full_name="=HYPERLINK(\"http://x\")", status="partial"),
            row(username="le-thi-b", full_name="Lê Thị Bích", status="absent", checked_in=False)]
    raw = export.csv_bytes(rows, VI, heading=["Hội nghị: Nghị quyết"], rule=CreditRule())
    assert raw.startswith(b"\xef\xbb\xbf")
    parsed = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert parsed[0] == [VI(c.label) for c in export.MEMBER_COLUMNS]
    assert parsed[1][:4] == ["nguyen-van-a", "Nguyễn Văn Ấn", "Đắk Lắk", "Điểm cầu Đắk Lắk"]
    assert parsed[1][7] == "Có mặt" and parsed[1][10] == "Có"
    assert parsed[2][0] == "'=evil" and parsed[2][1].startswith("'=HYPERLINK")
    assert parsed[3][7] == "Vắng mặt" and parsed[3][10] == "Không"
    assert parsed[4] == []
    assert parsed[5] == ["Hội nghị: Nghị quyết"]
    assert "80%" in parsed[6][0]
    # No cell anywhere starts a formula.
    assert not any(cell.startswith(("=", "+", "-", "@")) for line in parsed for cell in line)


def test_csv_in_english() -> None:
    parsed = list(csv.reader(io.StringIO(export.csv_bytes([row()], EN).decode("utf-8-sig"))))
    assert parsed[0][:3] == ["Username", "Full name", "Unit"]
    assert parsed[1][7] == "Attended"


def test_a_correction_is_written_out() -> None:
    correction = {"status": "attended", "credited_seconds": 3600, "reason": "=Ngồi tại hội trường",
                  "by": "admin", "at": "2026-12-01T09:00:00+00:00"}
    parsed = list(csv.reader(io.StringIO(export.csv_bytes([row(correction=correction)], EN).decode("utf-8-sig"))))
    assert parsed[1][-1] == ("Corrected by admin at 2026-12-01T09:00:00+00:00: Attended, 3600 s credited. "
                             "Reason: =Ngồi tại hội trường")


def test_xlsx_header_frozen_widths_rule_sheet_and_every_row(tmp_path: Path) -> None:
    rows = [row(username=f"hv-{i:05d}", full_name=f"=Học viên {i}") for i in range(10_000)]
    raw = export.xlsx_bytes(rows, VI, title="Điểm danh: hội nghị [1]", heading=["Hội nghị: X"], rule=CreditRule())
    path = tmp_path / "report.xlsx"
    path.write_bytes(raw)
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["Điểm danh  hội nghị  1", export.RULE_SHEET]
    sheet = book.worksheets[0]
    assert [c.value for c in sheet[1]] == [VI(c.label) for c in export.MEMBER_COLUMNS]
    assert sheet[1][0].font.bold
    assert sheet.freeze_panes == "C2"
    assert sheet.column_dimensions["B"].width == 28 and sheet.column_dimensions["N"].width == 48
    assert sheet.max_row == 10_001
    # A text cell, shown as typed: never a formula, no apostrophe in the way.
    assert sheet["A2"].value == "hv-00000" and sheet["B2"].value == "=Học viên 0"
    assert sheet["B2"].data_type == "s"
    assert sheet["E2"].value == 3000 and isinstance(sheet["E2"].value, int)
    rule = [r[0] for r in book[export.RULE_SHEET].iter_rows(values_only=True)]
    assert rule[0] == "Quy tắc tính"
    assert any("80%" in (line or "") for line in rule) and "Hội nghị: X" in rule


@pytest.mark.parametrize(("text", "plain", "full"), [
    ("Nghị quyết Đại hội XIII", "nghi-quyet-dai-hoi-xiii", "Nghị-quyết-Đại-hội-XIII"),
    ('a/b\\c:"d"\n', "a-b-c-d", "a-b-c-d"),
    ("", "", ""),
])
def test_file_name_parts(text: str, plain: str, full: str) -> None:
    assert export.ascii_name(text) == plain
    assert export.unicode_name(text) == full


def test_the_workbook_has_a_sheet_per_bridge_point_summary() -> None:
    import openpyxl

    points = [{"name": "Điểm cầu Hải Phòng", "unit": "Hải Phòng", "expected": 20, "checked_in": 12, "attended": 10,
               "partial": 3, "absent": 7, "attended_percent": 50.0, "connected_seconds": 3540, "talk_seconds": 130}]
    body = export.xlsx_bytes([], VI, title="Điểm danh", rule=CreditRule(), points=points)
    book = openpyxl.load_workbook(io.BytesIO(body))
    assert book.sheetnames == ["Điểm danh", export.POINTS_SHEET, export.RULE_SHEET]
    sheet = book[export.POINTS_SHEET]
    assert [c.value for c in sheet[1]] == [VI(c.label) for c in export.POINT_COLUMNS]
    assert [c.value for c in sheet[2]] == ["Điểm cầu Hải Phòng", "Hải Phòng", 20, 12, 10, 3, 7, 50, 59, 2]
