"""Files people open in a spreadsheet: CSV with a UTF-8 byte-order mark (so Excel reads
Chinese text as such) and XLSX with headers in the reader's language, numbers stored as
numbers with a format, column widths and a frozen header row.

Pure: columns and rows in, bytes out. A column is ``(key, zh-CN header, en header, kind)``;
``kind`` is ``text``, ``count`` (whole numbers), ``quantity`` (up to three decimals),
``money`` (yuan, two decimals) or ``day``. Without a language the headers are the keys
(what programs read)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from typing import Any

Column = tuple[str, str, str, str]
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_TYPE = "text/csv; charset=utf-8"
BOM = "\ufeff"
NUMBER_FORMATS = {"count": "#,##0", "quantity": "#,##0.###", "money": "#,##0.00"}
LANGS = ("zh-CN", "en")


def headers(columns: Sequence[Column], lang: str | None) -> list[str]:
    if lang is None:
        return [c[0] for c in columns]
    return [c[1] if lang == "zh-CN" else c[2] for c in columns]


# text a spreadsheet would run as a formula (or, through CSV, a command)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if isinstance(value, list | tuple):
        value = ", ".join(str(v) for v in value)
    elif isinstance(value, dict):
        value = ", ".join(f"{k}={v}" for k, v in value.items() if v is not None)
    elif hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(FORMULA_START):
        # what someone typed is shown as typed, never evaluated: a leading apostrophe
        # makes the spreadsheet read the cell as text
        return "'" + value
    return value


def to_csv(columns: Sequence[Column], rows: Iterable[dict[str, Any]],
           lang: str | None = None) -> str:
    """CSV text beginning with a byte-order mark."""
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out)
    writer.writerow(headers(columns, lang))
    for row in rows:
        writer.writerow([_cell(row.get(c[0])) for c in columns])
    return out.getvalue()


def add_sheet(book: Any, title: str, columns: Sequence[Column],
              rows: Iterable[dict[str, Any]], lang: str | None = None) -> Any:
    """A sheet of ``book`` (openpyxl) with a bold, frozen header row, numbers as numbers
    with their format, and columns wide enough for what they hold."""
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    sheet = book.create_sheet(title)
    head = headers(columns, lang)
    sheet.append(head)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    widths = [_width(h) for h in head]
    for row in rows:
        values = [_xlsx_cell(_cell(row.get(c[0]))) for c in columns]
        sheet.append(values)
        for i, (value, column) in enumerate(zip(values, columns, strict=True)):
            if column[3] in NUMBER_FORMATS and isinstance(value, int | float):
                sheet.cell(row=sheet.max_row, column=i + 1).number_format = \
                    NUMBER_FORMATS[column[3]]
            widths[i] = max(widths[i], _width(value))
    for i, width in enumerate(widths):
        sheet.column_dimensions[get_column_letter(i + 1)].width = min(max(width + 2, 8), 60)
    sheet.freeze_panes = "A2"
    return sheet


# control characters a workbook cannot hold (openpyxl refuses them): shown as U+FFFD
_NOT_IN_XLSX = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _xlsx_cell(value: Any) -> Any:
    """What someone typed (or a fuzzer sent) as a workbook can hold it."""
    return _NOT_IN_XLSX.sub("\ufffd", value) if isinstance(value, str) else value


def _width(value: Any) -> int:
    """Characters a value takes; a Chinese character is about two Latin ones wide."""
    if value is None:
        return 0
    text = f"{value:,.2f}" if isinstance(value, float) else str(value)
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def workbook() -> Any:
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    return book


def to_xlsx(sheets: Sequence[tuple[str, Sequence[Column], Iterable[dict[str, Any]]]],
            lang: str | None = None) -> bytes:
    book = workbook()
    for title, columns, rows in sheets:
        add_sheet(book, title, columns, rows, lang)
    return save(book)


def save(book: Any) -> bytes:
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
