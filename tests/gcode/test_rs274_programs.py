"""Acceptance: machinetwin agrees with LinuxCNC's rs274 on programs written for this suite.

``programs/*.ngc`` each exercise a group of RS274/NGC features (in mm or inches);
``programs/lib/`` holds subroutine files they call as ``o<name> call``. The BAD
programs must be rejected on the same line as rs274 rejects them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gcode_differential import compare_program

pytestmark = pytest.mark.service

PROGRAMS_DIR = Path(__file__).parent / "programs"
PROGRAMS = sorted(PROGRAMS_DIR.glob("*.ngc"))
LIBRARY = {p.name: p.read_text() for p in sorted((PROGRAMS_DIR / "lib").glob("*.ngc"))}


@pytest.mark.parametrize("path", PROGRAMS, ids=[p.name for p in PROGRAMS])
def test_program_agrees_with_rs274(path: Path, rs274_available: str) -> None:
    agreement = compare_program(path.read_text(), extra_files=LIBRARY)
    assert agreement.ok, agreement.detail
    # a program that fails in both would agree without testing what it was written for
    assert agreement.rs274_rc == 0, "rs274 rejected the program"


# Each program fails on its last line (most after a valid line, so that "same line" means
# something); an M2 is appended, which the error keeps from being reached.
BAD_PROGRAMS = {
    "two g codes from one group": "G0 X1\nG0 G1 X2\n",
    "two planes": "G0 X1\nG17 G18\n",
    "two units": "G20 G21\n",
    "two m codes from one group": "M3 M4\n",
    "two coolant codes": "M7 M8\n",
    "two stops": "M0 M2\n",
    "g1 without feed": "G0 X1\nG1 X2\n",
    "arc without center": "F10\nG2 X1 Y1\n",
    "arc mixed r and ijk": "F10\nG2 X1 Y1 I1 R1\n",
    "arc radius mismatch": "F10\nG0 X0 Y10\nG2 X20 Y10 I5\n",
    "arc r too small": "F10\nG2 X4 Y0 R1\n",
    "arc r to start point": "F10\nG2 X0 Y0 R1\n",
    "arc k in xy plane": "F10\nG2 X1 Y1 I1 K1\n",
    "arc absolute center missing": "F10 G90.1\nG2 X2 Y0 I1\n",
    "arc zero radius": "F10\nG2 X2 Y0 J0\n",
    "arc p not integer": "F10\nG2 X2 Y0 I1 P2.5\n",
    "arc p zero": "F10\nG2 X2 Y0 I1 P0\n",
    "inverse time g1 without f": "G93\nG1 X1\n",
    "inverse time arc without f": "G93\nG2 X1 Y1 R1\n",
    "feed per rev without speed": "G95 F1\nG1 X1\n",
    "dwell without p": "G0 X1\nG4\n",
    "cycle without r": "F10 G0 Z5\nG81 X1 Z-1\n",
    "cycle without z": "F10 G0 Z5\nG81 X1 R2\n",
    "cycle r below z": "F10 G0 Z5\nG81 X1 Z3 R2\n",
    "cycle zero repeats": "F10 G0 Z5\nG81 X1 Z-1 R2 L0\n",
    "cycle without feed": "G0 Z5\nG81 X1 Z-1 R2\n",
    "g82 without p": "F10 G0 Z5\nG82 X1 Z-1 R2\n",
    "g83 without q": "F10 G0 Z5\nG83 X1 Z-1 R2\n",
    "g83 negative q": "F10 G0 Z5\nG83 X1 Z-1 R2 Q-1.5\n",
    "g84 spindle off": "F10 G0 Z5\nG84 X1 Z-1 R2\n",
    "g87 without i": "F10 S100 M3 G0 Z5\nG87 X1 Z-1 R2 J1 K1\n",
    "cycle with a axis": "F10 G0 Z5\nG81 X1 Z-1 R2 A1\n",
    "axis words after g80": "G0 X1\nG80 X2\n",
    "axis words without motion": "G80\nX2\n",
    "g53 incremental": "G91\nG0 G53 X1\n",
    "g92 without axes": "G0 X1\nG92\n",
    "two codes using axes": "G0 X1\nG1 X1 G92 Y1\n",
    "g10 l2 p out of range": "G0 X1\nG10 L2 P10 X1\n",
    "g10 without l": "G0 X1\nG10 X1\n",
    "g10 l20 with r": "G0 X1\nG10 L20 P1 R10\n",
    "g10 l1 unknown tool": "G0 X1\nG10 L1 P99 Z1\n",
    "g10 l1 without offsets": "G0 X1\nG10 L1 P1\n",
    "g10 l1 bad orientation": "G0 X1\nG10 L1 P1 Z1 Q10\n",
    "g43 unknown tool": "G0 X1\nG43 H99\n",
    "t unknown tool": "G0 X1\nT99\n",
    "m61 without q": "G0 X1\nM61\n",
    "unused p word": "G0 X1 P1\n",
    "unused r word": "G0 X1 R1\n",
    "unused q word": "G0 X1 Q1\n",
    "unused h word": "G0 X1 H1\n",
    "unused i word": "G0 X1 I1\n",
    "repeated word": "G0 X1\nX1 X2\n",
    "unknown g code": "G0 X1\nG1.5\n",
    "m code too big": "G0 X1\nM200\n",
    "negative feed": "F-1\n",
    "negative speed": "G0 X1\nS-1\n",
    "bad character": "G0 X1\nU7\n",
    "percent inside program": "G0 X1\n%\n",
    "unclosed comment": "G0 X1\nG0 X2 (no end\n",
    "unclosed expression": "G0 X1\nG0 X[1 + 2\n",
    "unknown operation": "G0 X1\nG0 X[1 ) 2]\n",
    "division by zero": "G0 X1\nG0 X[1 / 0]\n",
    "modulo by zero": "G0 X1\n#1 = [5 MOD 0]\n",
    "sqrt of negative": "G0 X1\n#1 = SQRT[-1]\n",
    "ln of zero": "G0 X1\n#1 = LN[0]\n",
    "acos out of range": "G0 X1\n#1 = ACOS[2]\n",
    "atan without slash": "G0 X1\n#1 = ATAN[1]\n",
    "unary without bracket": "G0 X1\n#1 = ABS 1\n",
    "unknown function": "G0 X1\n#1 = FOO[1]\n",
    "parameter out of range": "G0 X1\n#6000 = 1\n",
    "undefined named parameter": "G0 X1\nG0 X#<nope>\n",
    "parameter setting without equals": "G0 X1\n#1 1\n",
    "unknown o-word sub": "G0 X1\no<nowhere> call\n",
    "endsub outside sub": "G0 X1\no1 endsub\n",
    "endwhile without while": "G0 X1\no1 endwhile\n",
    "unknown o-word command": "G0 X1\no1 foo\n",
    "if without bracket": "G0 X1\no1 if\n",
    "break out of repeat": "o1 repeat [2]\nG0 X1\no1 break\no1 endrepeat\n",
    "nested sub definition": "o1 sub\no2 sub\no2 endsub\no1 endsub\n",
    "sub redefined": "o1 sub\no1 endsub\no1 sub\no1 endsub\n",
    "abort comment": "G0 X1\n(ABORT, stop here)\n",
    "polar with x word": "G0 X1\nG0 X2 @1\n",
    "polar with y word": "G0 X1\nG1 F10 ^30 Y1\n",
    "polar radius at origin": "G0 X0\nG0 @1\n",
    "polar incremental at origin": "G0 X0\nG91 G0 ^10\n",
    "polar outside g17": "G18 G0 X1\nG0 @1\n",
    "polar with g53": "G0 X1\nG0 G53 @1\n",
    "polar without motion": "G0 X1\nG28 @1\n",
    "polar with g80": "G0 X1\nG80 ^10\n",
    "m72 without m70": "G0 X1\nM72\n",
    "m72 after m71": "M70\nM71\nM72\n",
    "m70 with spindle code": "G0 X1\nM3 M70\n",
    "probe without axes": "F10\nG38.2\n",
    "probe with zero feed": "G0 X1\nG38.2 X2\n",
    "probe at the start point": "F10 G0 X1\nG38.4 X1\n",
    "probe in feed per rev": "G95 F1 S100\nG38.2 X1\n",
    # cutter radius compensation: LinuxCNC refuses these while it is on
    "comp in yz plane": "G19\nG41 G0 X5\n",
    "comp on twice": "G41.1 D1 G0 X5\nG42.1 D1\n",
    "comp g41.1 without d": "G0 X1\nG41.1 G0 X5\n",
    "comp d not whole": "G0 X1\nG41 D1.5 G0 X5\n",
    "comp d negative": "G0 X1\nG41 D-1 G0 X5\n",
    "comp l outside g18": "G0 X1\nG41.1 D1 L2 G0 X5\n",
    "comp plane change": "G41.1 D1 G0 X5\nG18\n",
    "comp work system": "G41.1 D1 G0 X5\nG55\n",
    "comp g92": "G41.1 D1 G0 X5\nG92 X0\n",
    "comp control mode": "G41.1 D1 G0 X5\nG64 P0.1\n",
    "comp tool change": "G41.1 D1 G0 X5\nT1 M6\n",
    "comp tool offset": "G41.1 D1 G0 X5\nG43 H1\n",
    "comp canned cycle": "G41.1 D1 G0 X5\nG81 X1 Y1 Z-1 R1 F10\n",
    "comp probe": "G41.1 D1 G0 X5\nG38.2 Z-1 F10\n",
    "comp g28": "G41.1 D1 G0 X5\nG28\n",
    "comp g10 active system": "G41.1 D1 G0 X5\nG10 L2 P0 X1\n",
    "comp g53": "G41.1 D1 G0 X5\nG53 G0 X1\n",
    "comp arc after g40": "G41.1 D1 G0 X5\nG40 G2 X0 Y1 I0 J0.5 F10\n",
    "comp entry too short": "G0 X0 Y0\nG41.1 D4 G1 X1 F10\n",
    "comp entry arc too short": "F10\nG41.1 D4 G3 X1 Y1 R1\n",
    "comp tool in small arc": "G41.1 D1\nG3 X1 Y0 I0.5 J0 F10\n",
    "comp concave corner gouges": "F10 G0 X-20 Y0\nG41.1 D10 G1 X0 Y0\nX10\nY2\nX20\n",
    "comp spline": "F10 G41.1 D1 G0 X5\nG5.1 X10 Y5 I2 J2\n",
    "comp g33 entry": "S100 M3 G41.1 D1\nG33 X10 K1\n",
    # G33, G33.1 and G5.1
    "g33 without k": "S100 M3\nG33 Z-1\n",
    "g33 spindle off": "G0 X1\nG33 Z-1 K1\n",
    "g33 with f": "S100 M3\nG33 Z-1 K1 F10\n",
    "g33.1 without axes": "S100 M3\nG33.1 K1\n",
    "g5.1 without j": "F10\nG5.1 X10 Y5 I2\n",
    "g5.1 with z": "F10\nG5.1 X10 Y5 Z1 I2 J2\n",
    "g5.1 outside xy": "F10 G18\nG5.1 X10 Z5 I2 J2\n",
    "g5.1 without feed": "G0 X1\nG5.1 X10 Y5 I2 J2\n",
}
NO_END = "G0 X1\n"  # reading past the last line is an error too


@pytest.mark.parametrize(
    "text",
    [*(text + "M2\n" for text in BAD_PROGRAMS.values()), NO_END],
    ids=[*BAD_PROGRAMS, "no program end"],
)
def test_bad_program_rejected_like_rs274(text: str, rs274_available: str) -> None:
    agreement = compare_program(text)
    assert agreement.rs274_rc == 1, "rs274 accepted the program: it is not a BAD example"
    assert agreement.ok, agreement.detail
