"""Packaging: ``python -m build`` gives an sdist and a wheel that ``twine check`` accepts, from
one version source, and the wheel installs into a fresh virtual environment and runs.

Everything here is offline: the build runs without isolation (setuptools comes with the dev
extra), and the fresh environment finds tickerd's dependencies where this one installed them
(a ``.pth`` line naming this environment's site-packages) and installs the wheel with
``--no-index``, so pip still resolves every dependency the wheel declares against what is
installed, and fails naming the one missing.  The distributions are built once per session
from a copy of the files a fresh clone has (:func:`tests.sources.source_files`), so the build
never writes into the working tree.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.sources import ROOT, source_files
from tickerd.version import __version__

#: Building and installing take seconds each, more on a busy machine.
pytestmark = pytest.mark.timeout(180)

#: Files of the repository that are not part of the source release.
NOT_RELEASED = {".gitignore"}


def _run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``command``, which must succeed (its output is in the failure otherwise); ``cwd`` is
    never the repository, whose ``tickerd`` would shadow the installed one on ``sys.path``."""
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, (
        f"{' '.join(map(str, command))}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    )
    return done


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel ``python -m build`` makes (the wheel built from the sdist, as
    ``build`` does by default: a file missing from the sdist breaks the wheel)."""
    work = tmp_path_factory.mktemp("build")
    source = work / "src"
    for name in source_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    out = work / "dist"
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, source, cwd=work)
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


def test_the_version_has_one_source() -> None:
    """pyproject.toml names no version of its own: setuptools reads tickerd/version.py (the
    module ``tickerd --version``, the heartbeat and fullon's records take it from)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "tickerd.version.__version__"}


def test_the_distributions_carry_that_version_and_twine_accepts_them(dists: dict[str, Path]) -> None:
    assert dists["sdist"].name == f"tickerd-{__version__}.tar.gz"
    assert dists["wheel"].name == f"tickerd-{__version__}-py3-none-any.whl"
    _run(
        sys.executable,
        "-m",
        "twine",
        "check",
        "--strict",
        dists["sdist"],
        dists["wheel"],
        cwd=dists["wheel"].parent,
    )


def test_the_sdist_is_the_whole_source_release(dists: dict[str, Path]) -> None:
    """Tests with their conftest, docs, examples, deployment files: a new file outside what
    MANIFEST.in takes fails here rather than going missing from the release."""
    with tarfile.open(dists["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    missing = [name for name in source_files() if name not in names and name not in NOT_RELEASED]
    assert not missing, f"not in the sdist (add them to MANIFEST.in): {missing}"


def test_the_wheel_holds_every_file_of_the_package(dists: dict[str, Path]) -> None:
    """Every module and data file under tickerd/ (py.typed, anything a command serves)."""
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = set(wheel.namelist())
    missing = [name for name in source_files() if name.startswith("tickerd/") and name not in names]
    assert not missing, f"not in the wheel (package data in pyproject.toml?): {missing}"


def test_the_wheel_installs_offline_into_a_fresh_venv_and_runs(
    dists: dict[str, Path], tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(
        _run(
            python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path
        ).stdout.strip()
    )
    here = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (site / "installed-dependencies.pth").write_text("".join(f"{path}\n" for path in here))
    # This environment's pip (22.3+ has --python) installing into the fresh one, offline.
    _run(
        sys.executable, "-m", "pip", "--python", python, "install",
        "--no-index", "--no-cache-dir", "--no-compile", "--disable-pip-version-check", dists["wheel"],
        cwd=tmp_path,
    )  # fmt: skip
    located = _run(python, "-c", "import tickerd; print(tickerd.__file__)", cwd=tmp_path).stdout.strip()
    assert Path(located).is_relative_to(site), f"tickerd imported from {located}, not the fresh venv"
    tickerd = venv / "bin" / "tickerd"
    assert _run(tickerd, "--version", cwd=tmp_path).stdout.splitlines()[0] == f"tickerd {__version__}"
    # --help loads every command's module: a subpackage missing from the wheel fails here.
    _run(tickerd, "--help", cwd=tmp_path)
