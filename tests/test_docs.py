"""The README stays true to the code: its exchange table is the one the adapters generate."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickerd import exchanges
from tickerd.exchanges import table

README = (Path(__file__).parent.parent / "README.md").read_text()


def _rows() -> dict[str, str]:
    rows = [
        line for line in table.split(README)[1].splitlines() if not line.startswith(("| exchange", "|---"))
    ]
    return {row.split("|")[1].strip(): row for row in rows}


def test_the_exchange_table_is_the_generated_one() -> None:
    assert table.split(README)[1] == table.table(), (
        f"README.md's exchange table is out of date: run `{table.COMMAND}`"
    )


def test_every_exchange_has_a_row_naming_what_it_lacks() -> None:
    rows = _rows()
    assert sorted(rows) == exchanges.names()
    for name, row in rows.items():
        gaps = row.split("|")[-2]
        for field in exchanges.get(name).lacks:
            assert field.split("_")[0] in gaps, f"{name}: README does not say it lacks {field}"


def test_write_replaces_only_the_marked_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{table.BEGIN}\n| stale | row |\n{table.END}\n\nMore.\n")
    assert table.main(["--write", str(readme)]) == 0
    assert readme.read_text() == f"# Title\n\n{table.BEGIN}\n{table.table()}{table.END}\n\nMore.\n"


def test_write_refuses_a_file_without_the_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n")
    with pytest.raises(ValueError, match="exchanges-table"):
        table.main(["--write", str(readme)])
    assert readme.read_text() == "# Title\n"
