"""Acceptance: machinetwin agrees with LinuxCNC's rs274 on LinuxCNC's own sample programs.

Every top-level ``*.ngc`` of LinuxCNC's ``ncfiles`` directory is interpreted by both;
they must print the same canonical calls, or reject the program on the same line.
The other programs of the directory are available to ``o<name> call``, as they are
to rs274 run in that directory.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gcode_differential import Agreement, compare_program

NCFILES = Path("/usr/share/linuxcnc/ncfiles")

# Programs that need features this interpreter does not cover (yet). Strict xfail: a
# program that starts agreeing fails the suite until it is taken off this list.
OUT_OF_SCOPE: dict[str, str] = {}  # every sample agrees now


def sample_programs() -> list[Path]:
    return sorted(NCFILES.glob("*.ngc")) if NCFILES.is_dir() else []


PROGRAMS = sample_programs()


def program_param(path: Path):
    reason = OUT_OF_SCOPE.get(path.name)
    marks = [pytest.mark.service]
    if reason is not None:
        marks.append(pytest.mark.xfail(strict=True, reason=f"out of scope: {reason}"))
    return pytest.param(path, id=path.name, marks=marks)


def compare_sample(path: Path, library: dict[str, str]) -> Agreement:
    others = {name: text for name, text in library.items() if name != path.name}
    return compare_program(path.read_text(errors="replace"), extra_files=others)


@pytest.fixture(scope="session")
def ncfiles_agreement(rs274_available: str) -> dict[str, Agreement]:
    """All comparisons at once: rs274 runs are subprocesses, so threads overlap them."""
    library = {p.name: p.read_text(errors="replace") for p in PROGRAMS}
    workers = max(2, os.cpu_count() or 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda p: compare_sample(p, library), PROGRAMS)
        return {p.name: a for p, a in zip(PROGRAMS, results, strict=True)}


if PROGRAMS:

    @pytest.mark.parametrize("path", [program_param(p) for p in PROGRAMS])
    def test_sample_program_agrees_with_rs274(
        path: Path, ncfiles_agreement: dict[str, Agreement]
    ) -> None:
        agreement = ncfiles_agreement[path.name]
        assert agreement.ok, f"{path.name}: {agreement.detail}"

else:

    @pytest.mark.service
    def test_sample_program_agrees_with_rs274(rs274_available: str) -> None:
        pytest.skip(f"{NCFILES} not found: LinuxCNC's sample programs are not installed")


def test_out_of_scope_list_names_existing_programs() -> None:
    """A renamed or removed sample must not leave a stale exemption behind."""
    if not PROGRAMS:
        pytest.skip(f"{NCFILES} not found")
    names = {p.name for p in PROGRAMS}
    assert sorted(set(OUT_OF_SCOPE) - names) == []
