"""`thyme sql --format`: CSV and JSON that scripts can read back exactly, whatever the cells hold."""

from __future__ import annotations

import csv
import datetime
import io
import json

from thyme_cli.cmd_sql import render

COLUMNS = ["split", "note", "n", "at"]
ROWS = [("a.v2", 'comma, "quote"\nnewline', 3, datetime.date(2026, 11, 30)), ("b", None, 0, None)]


def test_csv_round_trips_awkward_cells():
    back = list(csv.reader(io.StringIO(render(COLUMNS, ROWS, "csv"))))
    assert back == [COLUMNS, ["a.v2", 'comma, "quote"\nnewline', "3", "2026-11-30"], ["b", "", "0", ""]]


def test_json_is_one_object_per_row_with_types_kept():
    back = json.loads(render(COLUMNS, ROWS, "json"))
    assert back == [{"split": "a.v2", "note": 'comma, "quote"\nnewline', "n": 3, "at": "2026-11-30"},
                    {"split": "b", "note": None, "n": 0, "at": None}]


def test_table_cuts_long_cells_but_csv_does_not():
    rows = [("x" * 100, None, 1, None)]
    assert "x" * 100 not in render(COLUMNS, rows, "table", max_width=20)
    assert "x" * 100 in render(COLUMNS, rows, "csv")
