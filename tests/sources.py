"""The project's files as a fresh clone of this working tree would have them, for the tests of
what is built from them (the sdist, the wheel, the container image's build context)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def source_files() -> list[str]:
    """Every file git tracks or would track (untracked but not ignored), relative to the root,
    that exists now: what the next commit holds, not the ignored ``.venv`` or build output."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    return sorted({name for name in listed if name and (ROOT / name).is_file()})
