"""The fast path: runs of plain motion blocks interpreted column-wise with numpy.

CAM output is mostly blocks like ``G1 X12.5 Y-3.25 F1200`` and ``G2 X.. Y.. I.. J..``.
Reading those one at a time in Python costs microseconds per line; here a whole chunk
of the file is tokenised, parsed and interpreted with array operations.

Exactness comes first: the fast path only ever takes a *prefix* of the chunk that it
can prove the ordinary interpreter would treat identically (no comments, parameters,
expressions, M/S/T words, mode changes, errors of any kind). The first line it cannot
take, and everything after it, goes back to the ordinary path, which also produces
every error message. All computations are causal (forward fill, cumulative sums), so
truncating to a prefix never changes what the prefix produces.

Numbers are parsed exactly: each token's digits form an integer mantissa below 2**53
that is divided by a power of ten, one correctly rounded division, which gives the
same double as ``strtod``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import canon
from .arcs import PLANES, RADIUS_TOLERANCE, SPIRAL_ABS_TOLERANCE, SPIRAL_REL_TOLERANCE

# Word letters the fast path accepts; anything else sends the line to the ordinary path.
LETTERS = b"GXYZABCIJKRFN"
LETTER_INDEX = np.full(256, -1, dtype=np.int8)
for _i, _c in enumerate(LETTERS):
    LETTER_INDEX[_c] = _i
G, X, Y, Z, A, B, C, I, J, K, R, F, N = range(len(LETTERS))  # noqa: E741
AXIS_COLUMNS = (X, Y, Z, A, B, C)

ALLOWED = np.zeros(256, dtype=bool)
for _c in b"0123456789.+-\n" + LETTERS:
    ALLOWED[_c] = True
# uppercase letters, and delete blanks, in one bytes.translate pass
UPPER = bytes(range(256)).upper()
BLANKS = b" \t\r"
POW10 = 10.0 ** np.arange(0, 23)
MAX_DIGITS = 15  # mantissas stay exact in float64 below 2**53

MOTION_G = {0: 0, 1: 10, 2: 20, 3: 30}


@dataclass(slots=True)
class ParsedChunk:
    """Word values per line (NaN when absent) for the accepted prefix of a chunk."""

    words: np.ndarray  # (lines, len(LETTERS)) float64
    consumed: int  # bytes of the original chunk covered by these lines


def parse_chunk(chunk: bytes) -> ParsedChunk:
    """Tokenise and parse the longest prefix of whole lines that are plain words."""
    raw = np.frombuffer(chunk, dtype=np.uint8)
    raw_nl = np.flatnonzero(raw == 10)
    text = chunk.translate(UPPER, BLANKS)
    arr = np.frombuffer(text, dtype=np.uint8)
    is_nl = arr == 10
    nl = np.flatnonzero(is_nl)
    n_lines = len(nl)
    if n_lines == 0:
        return ParsedChunk(np.empty((0, len(LETTERS))), 0)
    line_of = np.cumsum(is_nl) - is_nl  # line index of every character
    bad_line = np.zeros(n_lines + 1, dtype=bool)
    bad_line[line_of[~ALLOWED[arr]]] = True

    is_letter = LETTER_INDEX[arr] >= 0
    is_sep = is_letter | is_nl
    sep = np.flatnonzero(is_sep)
    owner = np.cumsum(is_sep) - 1  # index into `sep` of the separator before each char
    letter_pos = np.flatnonzero(is_letter)
    n_words = len(letter_pos)
    sep_to_word = np.full(len(sep), -1, dtype=np.int64)
    sep_to_word[is_letter[sep]] = np.arange(n_words)

    body = np.flatnonzero(~is_sep)
    word_of = sep_to_word[owner[body]] if len(body) else np.empty(0, dtype=np.int64)
    bad_line[line_of[body[word_of < 0]]] = True  # characters before any letter
    word_of_safe = np.where(word_of < 0, 0, word_of)
    ch = arr[body]
    is_digit = (ch >= 48) & (ch <= 57)
    is_dot = ch == 46
    is_sign = (ch == 43) | (ch == 45)
    offset = body - letter_pos[word_of_safe] - 1 if n_words else body
    valid_body = word_of >= 0

    n_digits = np.bincount(word_of_safe[is_digit & valid_body], minlength=n_words)
    n_dots = np.bincount(word_of_safe[is_dot & valid_body], minlength=n_words)
    misplaced_sign = np.bincount(
        word_of_safe[is_sign & valid_body & (offset != 0)], minlength=n_words
    )
    word_line = line_of[letter_pos]
    bad_word = (n_digits == 0) | (n_digits > MAX_DIGITS) | (n_dots > 1) | (misplaced_sign > 0)
    bad_line[word_line[bad_word]] = True

    # mantissa: every digit weighted by ten to the number of digits after it in its word
    digit_rank = np.cumsum(is_digit)  # digits up to and including this char
    word_end_rank = np.zeros(n_words, dtype=np.int64)
    np.maximum.at(word_end_rank, word_of_safe[valid_body], digit_rank[valid_body])
    d_idx = np.flatnonzero(is_digit & valid_body)
    d_word = word_of_safe[d_idx]
    after = np.minimum(word_end_rank[d_word] - digit_rank[d_idx], 22)
    mantissa = np.bincount(d_word, weights=(ch[d_idx] - 48) * POW10[after], minlength=n_words)
    dot_idx = np.flatnonzero(is_dot & valid_body)
    decimals = np.zeros(n_words, dtype=np.int64)
    decimals[word_of_safe[dot_idx]] = word_end_rank[word_of_safe[dot_idx]] - digit_rank[dot_idx]
    value = mantissa / POW10[np.minimum(decimals, 22)]
    negative = np.zeros(n_words, dtype=bool)
    negative[word_of_safe[np.flatnonzero((ch == 45) & valid_body)]] = True
    value[negative] = -value[negative]

    letter = LETTER_INDEX[arr[letter_pos]].astype(np.int64)
    # one word per letter per line; N only at the start of a line
    key = word_line * len(LETTERS) + letter
    counts = np.bincount(key, minlength=(n_lines + 1) * len(LETTERS))
    bad_line[word_line[counts[key] > 1]] = True
    line_start = np.concatenate(([0], nl[:-1] + 1))
    is_n = letter == N
    bad_line[word_line[is_n & (letter_pos != line_start[word_line])]] = True

    limit = int(np.argmax(bad_line[:n_lines])) if bad_line[:n_lines].any() else n_lines
    if limit == 0:
        return ParsedChunk(np.empty((0, len(LETTERS))), 0)
    keep = word_line < limit
    words = np.full((limit, len(LETTERS)), np.nan)
    words[word_line[keep], letter[keep]] = value[keep]
    return ParsedChunk(words, int(raw_nl[limit - 1]) + 1)


def forward_fill(values: np.ndarray, initial: float) -> np.ndarray:
    """Each NaN replaced by the last value before it (``initial`` at the start)."""
    present = ~np.isnan(values)
    idx = np.where(present, np.arange(len(values)), -1)
    np.maximum.accumulate(idx, out=idx)
    out = np.where(idx >= 0, values[np.maximum(idx, 0)], initial)
    return out


def first_true(mask: np.ndarray) -> int:
    """Index of the first True, or len(mask)."""
    return int(np.argmax(mask)) if mask.any() else len(mask)


@dataclass(slots=True)
class FastResult:
    batch: canon.MotionBatch | None
    lines: int  # lines taken
    consumed: int  # bytes taken
    position: list[float]
    motion_mode: int
    feed_rate: float


def interpret_chunk(
    chunk: bytes,
    first_line: int,
    position: list[float],
    motion_mode: int,
    feed_rate: float,
    incremental: bool,
    arc_incremental: bool,
    plane: int,
    units: str,
) -> FastResult | None:
    """Interpret the plain-motion prefix of ``chunk``; None when there is none."""
    parsed = parse_chunk(chunk)
    w = parsed.words
    n = len(w)
    if n == 0:
        return None
    present = ~np.isnan(w)
    has_g = present[:, G]
    has_axis = present[:, AXIS_COLUMNS].any(axis=1)
    motion_row = has_g | has_axis
    g = w[:, G]
    g_code = np.where(has_g, g * 10, np.nan)
    valid_g = ~has_g | np.isin(g, (0.0, 1.0, 2.0, 3.0))
    mode = forward_fill(g_code, float(motion_mode))
    is_arc = motion_row & ((mode == 20) | (mode == 30))
    arc_words = present[:, (I, J, K, R)].any(axis=1)
    feed = forward_fill(w[:, F], feed_rate)
    problem = (
        ~valid_g
        | (motion_row & ~np.isin(mode, (0.0, 10.0, 20.0, 30.0)))
        | (arc_words & ~is_arc)
        | (present[:, F] & (w[:, F] < 0))
        | (motion_row & (mode != 0) & (feed == 0.0))
    )
    limit = first_true(problem)

    target = np.empty((n, 6))
    for k, col in enumerate(AXIS_COLUMNS):
        v = w[:, col]
        if incremental:
            target[:, k] = position[k] + np.cumsum(np.nan_to_num(v))
        else:
            target[:, k] = forward_fill(v, position[k])
    start = np.vstack([np.asarray(position, dtype=float)[None, :], target[:-1]])

    first, second, normal, _, _ = PLANES[plane]
    centre = np.full((n, 2), np.nan)
    if is_arc[:limit].any():
        arc_problem = arc_centres(w, present, is_arc, mode, start, target, centre, plane,
                                  arc_incremental, units)  # fmt: skip
        limit = min(limit, first_true(arc_problem))
    if limit == 0:
        return None

    rows = np.flatnonzero((motion_row | present[:, F])[:limit])
    kind = np.where(motion_row, np.select([mode == 0, mode == 10], [0, 1], 2), -1).astype(np.int8)
    rotation = np.where(mode == 30, 1, -1).astype(np.int8)
    consumed = parsed.consumed if limit == n else line_end_offset(chunk, limit)
    last = limit - 1
    batch = None
    if len(rows):
        batch = canon.MotionBatch(
            line=first_line + int(rows[0]),
            lines=(first_line + rows).astype(np.int64),
            kind=kind[rows],
            feed_set=present[rows, F],
            feed=feed[rows],
            end=target[rows],
            centre=centre[rows],
            rotation=rotation[rows],
            plane=("XY", "XZ", "YZ")[(plane - 170) // 10],
        )
    return FastResult(batch, limit, consumed, [float(v) for v in target[last]], int(mode[last]),
                      float(feed[last]))  # fmt: skip


def line_end_offset(chunk: bytes, lines: int) -> int:
    raw_nl = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
    return int(raw_nl[lines - 1]) + 1


def arc_centres(w, present, is_arc, mode, start, target, centre, plane, arc_incremental, units):
    """Fill arc centres in place; return the rows the ordinary path must handle instead."""
    first, second, _, (cw1, cw2), _ = PLANES[plane]
    col = {"i": I, "j": J, "k": K}
    c1_col, c2_col = col[cw1], col[cw2]
    forbidden = {170: K, 180: J, 190: I}[plane]
    has_r = present[:, R]
    has_ijk = present[:, (I, J, K)].any(axis=1)
    s1, s2 = start[:, first], start[:, second]
    e1, e2 = target[:, first], target[:, second]
    problem = is_arc & ((has_r == has_ijk) | present[:, forbidden])
    # I/J/K form
    ijk = is_arc & has_ijk & ~has_r
    if arc_incremental:
        c1 = s1 + np.nan_to_num(w[:, c1_col])
        c2 = s2 + np.nan_to_num(w[:, c2_col])
    else:
        problem |= ijk & ~(present[:, c1_col] & present[:, c2_col])
        c1, c2 = w[:, c1_col], w[:, c2_col]
    # R form (the centre on the side that makes the arc short for R > 0)
    rform = is_arc & has_r & ~has_ijk
    axis_letters = {170: (X, Y), 180: (X, Z), 190: (Y, Z)}[plane]
    problem |= rform & ~(present[:, axis_letters[0]] | present[:, axis_letters[1]])
    problem |= rform & (e1 == s1) & (e2 == s2)
    r = w[:, R]
    with np.errstate(invalid="ignore", divide="ignore"):
        radius = np.abs(r)
        mid1, mid2 = (s1 + e1) / 2, (s2 + e2) / 2
        half = np.hypot(mid1 - e1, mid2 - e2)
        problem |= rform & (half - radius > RADIUS_TOLERANCE[units])
        half = np.where(half / radius > 1 - 1e-12, radius, half)
        chord = np.arctan2(e2 - s2, e1 - s1)
        right = ((mode == 20) & (r > 0)) | ((mode == 30) & (r < 0))
        theta = np.where(right, chord - np.pi / 2, chord + np.pi / 2)
        offset = radius * np.cos(np.arcsin(half / radius))
        rc1 = mid1 + offset * np.cos(theta)
        rc2 = mid2 + offset * np.sin(theta)
    c1 = np.where(rform, rc1, c1)
    c2 = np.where(rform, rc2, c2)
    # the radius checks the ordinary path makes for I/J/K arcs
    r1 = np.hypot(s1 - c1, s2 - c2)
    r2 = np.hypot(e1 - c1, e2 - c2)
    with np.errstate(invalid="ignore", divide="ignore"):
        abs_err = np.abs(r1 - r2)
        rel_err = abs_err / np.maximum(r1, r2)
    zero = (r1 < RADIUS_TOLERANCE[units]) | (r2 < RADIUS_TOLERANCE[units])
    spiral = (abs_err > SPIRAL_ABS_TOLERANCE[units]) & (rel_err > SPIRAL_REL_TOLERANCE)
    problem |= ijk & (zero | spiral)
    problem |= is_arc & ~(np.isfinite(c1) & np.isfinite(c2))
    centre[:, 0] = np.where(is_arc, c1, np.nan)
    centre[:, 1] = np.where(is_arc, c2, np.nan)
    return problem
