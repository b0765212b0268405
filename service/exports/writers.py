"""Writers of sheets to a file on disk, a row at a time: CSV and XLSX.

Both write to a file rather than to the response, so that a sheet is complete (or
refused with a proper problem, e.g. too many rows) before its first byte is sent,
the database connection is given back before a slow client downloads it, and no
whole sheet is ever held in memory.

CSV: UTF-8 with a byte-order mark, so that Excel opens Chinese text as such; RFC 4180
quoting and CRLF line ends (the `csv` module's `excel` dialect). A text cell that
begins with `=`, `+`, `-`, `@`, a tab or a carriage return is prefixed with `'`
(OWASP's advice against CSV injection): item names and the like are typed by
people, and a spreadsheet would otherwise run them as formulas. Numbers are written
as numbers. A yuan cell is exact text (`12.50`), made from the integer fen.

XLSX: XlsxWriter in `constant_memory` mode (each row is flushed to a temporary file
as soon as the next begins), text always as text (never read as a formula or a
number), integers as numbers, and a yuan cell as the formula `=<fen cell>/100` in a
`0.00` format whose cached result is the exact decimal, so the sheet shows yuan even
where nothing recalculates it. Text needs no apostrophe there: a string cell is
never evaluated.
"""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path
from typing import IO, Final, Protocol

import xlsxwriter  # type: ignore[import-untyped]  # ships no py.typed
from xlsxwriter.utility import xl_rowcol_to_cell  # type: ignore[import-untyped]

from service.exports.sheet import Cell, Row, Yuan
from service.i18n import yuan

_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
# Litestar appends `; charset=utf-8` to a text type: sent as `text/csv; charset=utf-8`.
CSV_TYPE: Final = "text/csv"
XLSX_TYPE: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class SheetWriter(Protocol):
    def row(self, cells: Row) -> None: ...

    def close(self) -> None: ...


def guarded(text: str) -> str:
    """`text` as a spreadsheet will not run it as a formula."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_cell(cell: Cell) -> str | int:
    if isinstance(cell, str):
        return guarded(cell)
    if isinstance(cell, Yuan):
        return yuan(cell.fen)
    return "" if cell is None else cell


class CsvSheet:
    def __init__(self, path: Path) -> None:
        self._file: IO[str] = path.open("w", encoding="utf-8-sig", newline="")
        self._csv = csv.writer(self._file, dialect="excel")

    def row(self, cells: Row) -> None:
        self._csv.writerow([_csv_cell(c) for c in cells])

    def close(self) -> None:
        self._file.close()


class XlsxSheet:
    def __init__(self, path: Path, title: str, widths: list[int]) -> None:
        self._book = xlsxwriter.Workbook(
            str(path),
            {
                "constant_memory": True,
                "strings_to_numbers": False,
                "strings_to_formulas": False,
                "strings_to_urls": False,
            },
        )
        self._sheet = self._book.add_worksheet(title)
        self._yuan = self._book.add_format({"num_format": "0.00"})
        self._bold = self._book.add_format({"bold": True})
        for col, width in enumerate(widths):
            self._sheet.set_column(col, col, width)
        self._sheet.freeze_panes(1, 0)
        self._next = 0

    def row(self, cells: Row) -> None:
        r = self._next
        bold = self._bold if r == 0 else None
        for col, cell in enumerate(cells):
            if isinstance(cell, str):
                self._sheet.write_string(r, col, cell, bold)
            elif isinstance(cell, Yuan):
                fen_cell = xl_rowcol_to_cell(r, col - 1)
                exact = Decimal(cell.fen).scaleb(-2)
                self._sheet.write_formula(r, col, f"={fen_cell}/100", self._yuan, exact)
            elif cell is not None:
                self._sheet.write_number(r, col, cell)
        self._next += 1

    def close(self) -> None:
        self._book.close()
