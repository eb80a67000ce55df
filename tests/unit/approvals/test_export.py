"""CSV export: cells a spreadsheet will not run as a formula."""

from __future__ import annotations

import pytest

from echocenter.approvals.export import _cell


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("x")', '\'=HYPERLINK("x")'),
        ("+1", "'+1"),
        ("-rf", "'-rf"),
        ("@SUM", "'@SUM"),
        ("uptime", "uptime"),
        (None, ""),
    ],
)
def test_csv_cells_never_start_a_formula(value: object, cell: str) -> None:
    assert _cell(value) == cell
