"""The README stays true to the code: every exchange is documented with what it lacks."""

from __future__ import annotations

from pathlib import Path

from tickerd import exchanges

README = (Path(__file__).parent.parent / "README.md").read_text()


def _rows() -> dict[str, str]:
    table = README.split("<!-- exchanges-table -->")[1].split("<!-- /exchanges-table -->")[0]
    rows = [
        line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| exchange")
    ]
    return {row.split("|")[1].strip(): row for row in rows}


def test_every_exchange_has_a_row_naming_what_it_lacks() -> None:
    rows = _rows()
    assert sorted(rows) == exchanges.names()
    for name, row in rows.items():
        gaps = row.split("|")[-2]
        for field in exchanges.get(name).lacks:
            assert field.split("_")[0] in gaps, f"{name}: README does not say it lacks {field}"
