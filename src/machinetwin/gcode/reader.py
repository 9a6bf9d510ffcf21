"""Reading one line of RS274/NGC into a :class:`Block`.

Like LinuxCNC's ``interp_read.cc``: spaces and case are dropped outside comments,
then words, parameter settings, comments and O-words are read left to right.
Expressions are evaluated while reading, against the parameter values as they were
before the line (parameter settings on a line take effect together, after it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import GCodeError

WORD_LETTERS = frozenset("abcdefghijklmpqrstxyz@^")
POLAR_WORDS = frozenset("@^")  # polar radius and angle; LinuxCNC lets a later one win
INTEGER_WORDS = frozenset("hlmt")  # read with read_integer_value, as LinuxCNC does (D is real)
NEGATIVE_WORD_ERRORS = {"m": "Negative m code used", "l": "Negative l word used"}

O_KEYWORDS = (
    "endsub", "sub", "call", "endwhile", "while", "do", "elseif", "else", "endif", "if",
    "break", "continue", "return", "endrepeat", "repeat",
)  # fmt: skip

UNARY_FUNCTIONS = (
    "abs", "acos", "asin", "atan", "cos", "exists", "exp", "fix", "fup", "ln", "round",
    "sin", "sqrt", "tan",
)  # fmt: skip

# Binary operators by spelling, longest first so that "**" wins over "*".
BINARY_OPERATORS = (
    "**", "*", "/", "mod", "+", "-", "eq", "ne", "gt", "ge", "lt", "le", "and", "or", "xor",
)  # fmt: skip
PRECEDENCE = {
    "**": 6, "*": 5, "/": 5, "mod": 5, "+": 4, "-": 4,
    "eq": 3, "ne": 3, "gt": 3, "ge": 3, "lt": 3, "le": 3,
    "and": 2, "or": 2, "xor": 2,
}  # fmt: skip
TOLERANCE_EQUAL = 1e-6  # LinuxCNC compares EQ/NE with this tolerance
TOLERANCE_INTEGER = 1e-4  # how far from a whole number an integer-valued word may be
TOLERANCE_G_CODE = 1e-3  # on ten times the G number, as read_g does
MAX_LINE_LENGTH = 252  # longer lines overflow rs274's line buffer ("Command too long")
UNARY_BY_LETTER = {
    "a": ("abs", "acos", "asin", "atan"), "c": ("cos",), "e": ("exists", "exp"),
    "f": ("fix", "fup"), "l": ("ln",), "r": ("round",), "s": ("sin", "sqrt"), "t": ("tan",),
}  # fmt: skip
OPERATOR_LETTERS = frozenset("aeglmnox")
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")


@dataclass(slots=True)
class OWord:
    """An O-word control statement: ``o<name> KEYWORD [expr] [args...]``."""

    name: str
    keyword: str
    value: float | None = None  # condition, repeat count or return value
    args: list[float] = field(default_factory=list)


@dataclass(slots=True)
class Block:
    """One line of a program, read and with all expressions evaluated."""

    line: int
    words: dict[str, float] = field(default_factory=dict)
    g_codes: list[tuple[int, int]] = field(default_factory=list)  # (code*10, column)
    m_codes: list[tuple[int, int]] = field(default_factory=list)
    columns: dict[str, int] = field(default_factory=dict)  # letter -> column
    param_settings: list[tuple[int | str, float]] = field(default_factory=list)
    comment: str | None = None
    oword: OWord | None = None
    n_number: int | None = None
    percent: bool = False
    empty: bool = True


class ParameterReader:
    """What the reader needs to evaluate ``#`` references (implemented by Parameters)."""

    def get_numbered(self, index: int) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def get_named(self, name: str) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def named_exists(self, name: str) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def is_read_only(self, name: str) -> bool:  # pragma: no cover - interface
        return False

    def declare(self, name: str) -> None:  # pragma: no cover - interface
        """A setting of ``name`` has been read (LinuxCNC creates it right away)."""


def clean_line(raw: str, line_no: int) -> tuple[str, list[int]]:
    """Drop spaces and tabs and lowercase outside comments; map each char to its column.

    Checks comment nesting like LinuxCNC (``Nested comment found``,
    ``Unclosed comment found``). A ``;`` starts a comment to the end of the line.
    """
    chars: list[str] = []
    cols: list[int] = []
    in_comment = False
    for i, ch in enumerate(raw):
        if in_comment:
            if ch == "(":
                raise GCodeError("Nested comment found", line_no, i + 1)
            chars.append(ch)
            cols.append(i + 1)
            if ch == ")":
                in_comment = False
        elif ch in " \t\r\n":
            continue
        elif ch == "(":
            in_comment = True
            chars.append(ch)
            cols.append(i + 1)
        elif ch == ";":
            chars.append(ch)
            cols.append(i + 1)
            chars.extend(raw[i + 1 :].rstrip("\r\n"))
            cols.extend(range(i + 2, i + 2 + len(raw[i + 1 :].rstrip("\r\n"))))
            break
        else:
            chars.append(ch.lower())
            cols.append(i + 1)
    if in_comment:
        raise GCodeError("Unclosed comment found", line_no, len(raw.rstrip("\r\n")) + 1)
    return "".join(chars), cols


class LineParser:
    """Reads one cleaned line; a new instance per line keeps the cursor state simple."""

    def __init__(self, text: str, cols: list[int], line_no: int, params: ParameterReader):
        self.text = text
        self.cols = cols
        self.line_no = line_no
        self.params = params
        self.pos = 0

    # --- errors and cursor -------------------------------------------------------

    def error(self, message: str, pos: int | None = None) -> GCodeError:
        p = self.pos if pos is None else pos
        col = self.cols[p] if p < len(self.cols) else (self.cols[-1] + 1 if self.cols else 1)
        return GCodeError(message, self.line_no, col)

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def expect(self, ch: str, message: str) -> None:
        if self.text[self.pos : self.pos + 1] != ch:
            raise self.error(message)
        self.pos += 1

    # --- the line ----------------------------------------------------------------

    def read_block(self) -> Block:
        block = Block(self.line_no)
        text = self.text
        if text == "%" or (text.startswith("%") and text[1:].startswith(("(", ";"))):
            block.percent = True
            return block
        if text.startswith("/"):
            self.pos = 1  # block delete is off, as in rs274: the line runs
        if text.startswith("n", self.pos):
            self.read_n_number(block)
        if text.startswith("o", self.pos):
            block.oword = self.read_oword()
            block.empty = False
            self.read_trailing_comments(block)
            return block
        while not self.at_end():
            ch = text[self.pos]
            if ch == "(":
                block.comment = self.read_comment()
            elif ch == ";":
                break
            elif ch == "#":
                self.read_parameter_setting(block)
                block.empty = False
            elif ch in WORD_LETTERS:
                self.read_word(block)
                block.empty = False
            else:
                raise self.error(f"Bad character '{ch}' used")
        if block.comment is not None:
            block.empty = False
        return block

    def read_n_number(self, block: Block) -> None:
        start = self.pos
        self.pos += 1
        digits_start = self.pos
        while self.peek().isdigit():
            self.pos += 1
        if self.pos == digits_start:
            raise self.error("Bad format unsigned integer", start)
        block.n_number = int(self.text[digits_start : self.pos])
        if self.peek() == ".":  # LinuxCNC tolerates a decimal part on N words
            self.pos += 1
            while self.peek().isdigit():
                self.pos += 1

    def read_oword(self) -> OWord:
        self.pos += 1  # the 'o'
        if self.peek() == "<":
            name = "<" + self.read_parameter_name().lower() + ">"
        else:
            name = str(self.read_integer_value())
        for keyword in O_KEYWORDS:
            if self.text.startswith(keyword, self.pos):
                self.pos += len(keyword)
                break
        else:
            raise self.error("Unknown keyword after O-word")
        word = OWord(name, keyword)
        if keyword in ("while", "if", "elseif", "repeat"):
            if self.peek() != "[":
                raise self.error(f"Left bracket missing after O-word '{keyword}'")
            word.value = self.read_expression()
        elif keyword in ("return", "endsub") and self.peek() == "[":
            word.value = self.read_expression()
        elif keyword == "call":
            while self.peek() == "[":
                word.args.append(self.read_expression())
        return word

    def read_comment(self) -> str:
        end = self.text.index(")", self.pos)
        body = self.text[self.pos + 1 : end]
        self.pos = end + 1
        return body

    def read_trailing_comments(self, block: Block) -> None:
        while not self.at_end():
            if self.peek() == "(":
                block.comment = self.read_comment()
            elif self.peek() == ";":
                return
            else:
                raise self.error("Unexpected text after O-word statement")

    def read_word(self, block: Block) -> None:
        letter = self.text[self.pos]
        start = self.pos
        self.pos += 1
        if letter == "g":
            self.read_g(block, start)
            return
        if letter in INTEGER_WORDS:
            value = float(self.read_integer_value())
            if value < 0 and letter in NEGATIVE_WORD_ERRORS:
                raise self.error(NEGATIVE_WORD_ERRORS[letter], start)
            if letter == "m":
                if value > 199:
                    raise self.error(f"M-code greater than 199: M{int(value)}", start)
                block.m_codes.append((int(value), self.cols[start]))
                return
        else:
            value = self.read_real_value()
        if letter in block.words and letter not in POLAR_WORDS:
            raise self.error(f"Multiple {letter} words on one line", start)
        block.words[letter] = value
        block.columns[letter] = self.cols[start]

    def read_g(self, block: Block, start: int) -> None:
        value = self.read_real_value()
        if value < 0:
            raise self.error("Negative g code used", start)
        tenfold = value * 10
        code = round(tenfold)
        if abs(tenfold - code) > TOLERANCE_G_CODE or code > 9999:
            raise self.error("G-code out of range", start)
        block.g_codes.append((code, self.cols[start]))

    def read_parameter_setting(self, block: Block) -> None:
        start = self.pos
        self.pos += 1
        if self.peek() == "<":
            target: int | str = self.read_parameter_name()
            if self.params.is_read_only(target):
                raise self.error(f"Cannot assign to read-only parameter #<{target}>", start)
            self.params.declare(target)
        else:
            target = self.parameter_index(self.read_integer_value(), start)
        self.expect("=", "Equal sign missing in parameter setting")
        block.param_settings.append((target, self.read_real_value()))

    # --- values ------------------------------------------------------------------

    def read_real_value(self) -> float:
        if self.at_end():
            raise self.error("No characters found in reading real value")
        ch = self.text[self.pos]
        if ch == "[":
            return self.read_expression()
        if ch == "#":
            return self.read_parameter()
        if ch == "+" or ch == "-":
            after = self.text[self.pos + 1 : self.pos + 2]
            # a sign before a number belongs to it (so -2**2 = 4); before anything
            # else it is a unary operator
            if after and not (after.isdigit() or after == "."):
                self.pos += 1
                value = self.read_real_value()
                return -value if ch == "-" else value
            return self.read_number()
        if ch.isalpha():
            return self.read_unary()
        return self.read_number()

    def read_integer_value(self) -> int:
        start = self.pos
        value = self.read_real_value()
        whole = math.floor(value)
        if value - whole > 1.0 - TOLERANCE_INTEGER:
            whole += 1
        elif value - whole > TOLERANCE_INTEGER:
            raise self.error("Non integer value for integer", start)
        return whole

    def read_number(self) -> float:
        start = self.pos
        text = self.text
        n = len(text)
        end = start + 1 if start < n and text[start] in "+-" else start
        while end < n and (text[end].isdigit() or text[end] == "."):
            end += 1
        token = text[start:end]
        match = NUMBER.match(token)
        if match is None:
            raise self.error(f"bad number format (conversion failed) parsing '{token}'", start)
        if match.end() != len(token):
            raise self.error(f"bad number format (trailing characters) parsing '{token}'", start)
        self.pos = end
        return float(token)

    def parameter_index(self, index: int, pos: int) -> int:
        if index < 1 or index > 5601:
            raise self.error("Parameter number out of range", pos)
        return index

    def read_parameter_name(self) -> str:
        """The name between ``<`` and ``>`` (the cursor is on ``<``); may be empty."""
        end = self.text.find(">", self.pos)
        if end < 0:
            raise self.error("Named parameter not terminated")
        name = self.text[self.pos + 1 : end]
        self.pos = end + 1
        return name

    def read_parameter(self) -> float:
        start = self.pos
        self.pos += 1
        if self.peek() == "<":
            name = self.read_parameter_name()
            try:
                return check_finite(self.params.get_named(name), self.error, start)
            except KeyError:
                raise self.error(f"Named parameter #<{name}> not defined", start) from None
        index = self.parameter_index(self.read_integer_value(), start)
        return self.params.get_numbered(index)

    def read_unary(self) -> float:
        start = self.pos
        letter = self.text[self.pos]
        names = UNARY_BY_LETTER.get(letter)
        if names is None:
            raise self.error("Unknown word where unary operation could be")
        for name in names:
            if self.text.startswith(name, self.pos):
                self.pos += len(name)
                break
        else:
            raise self.error(f"Unknown word starting with {letter}")
        if self.peek() != "[":
            raise self.error("Left bracket missing after unary operation name")
        if name == "exists":
            return self.read_exists()
        arg = self.read_expression()
        if name == "atan":
            if self.peek() != "/":
                raise self.error("Slash missing after first atan argument")
            self.pos += 1
            if self.peek() != "[":
                raise self.error("Left bracket missing after slash with atan")
            return math.degrees(math.atan2(arg, self.read_expression()))

        def error(message: str, _pos: int | None = None) -> GCodeError:
            return self.error(message, start)

        return check_finite(apply_unary(name, arg, error), error)

    def read_exists(self) -> float:
        self.pos += 1  # the '['
        if self.peek() != "#":
            raise self.error("Expected # reading parameter")
        self.pos += 1
        if self.peek() == "<":
            found = self.params.named_exists(self.read_parameter_name())
        else:
            self.read_integer_value()  # numbered parameters always exist
            found = True
        if self.peek() != "]":
            raise self.error("Expected ] reading bracketed parameter")
        self.pos += 1
        return 1.0 if found else 0.0

    def read_expression(self) -> float:
        """``[ value (op value)* ]`` with LinuxCNC's operator precedence."""
        self.expect("[", "Left bracket missing")
        values = [self.read_real_value()]
        ops: list[tuple[str, int]] = []  # with where each was read, for error columns
        while True:
            if self.peek() == "]":
                self.pos += 1
                break
            if self.at_end():
                raise self.error("Unclosed expression")
            at = self.pos
            op = self.read_operator()
            while ops and PRECEDENCE[ops[-1][0]] >= PRECEDENCE[op]:
                self.reduce(values, ops)
            ops.append((op, at))
            values.append(self.read_real_value())
        while ops:
            self.reduce(values, ops)
        return values[0]

    def read_operator(self) -> str:
        for op in BINARY_OPERATORS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return op
        letter = self.peek()
        if letter in OPERATOR_LETTERS:
            raise self.error(f"Unknown operation name starting with {letter}")
        raise self.error("Unknown operation")

    def reduce(self, values: list[float], ops: list[tuple[str, int]]) -> None:
        op, at = ops.pop()
        right = values.pop()
        left = values.pop()

        def error(message: str, _pos: int | None = None) -> GCodeError:
            return self.error(message, at)

        values.append(check_finite(apply_binary(op, left, right, error), error))


def apply_binary(op: str, a: float, b: float, error: Callable[[str], GCodeError]) -> float:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        if b == 0.0:
            raise error("Attempt to divide by zero")
        return a / b
    if op == "mod":
        if b == 0.0:
            return math.nan  # fmod(a, 0) in C; reported as "not a number"
        r = math.fmod(a, b)
        return r + abs(b) if r < 0 else r
    if op == "**":
        if a < 0.0 and b != math.floor(b):
            raise error("Attempt to raise negative to non integer power")
        try:
            return math.pow(a, b)
        except (OverflowError, ValueError):
            return math.inf  # pow() overflows or divides by zero in C
    if op == "eq":
        return 1.0 if abs(a - b) < TOLERANCE_EQUAL else 0.0
    if op == "ne":
        return 0.0 if abs(a - b) < TOLERANCE_EQUAL else 1.0
    if op == "gt":
        return 1.0 if a > b else 0.0
    if op == "ge":
        return 1.0 if a >= b else 0.0
    if op == "lt":
        return 1.0 if a < b else 0.0
    if op == "le":
        return 1.0 if a <= b else 0.0
    if op == "and":
        return 1.0 if (a != 0.0 and b != 0.0) else 0.0
    if op == "or":
        return 1.0 if (a != 0.0 or b != 0.0) else 0.0
    if op == "xor":
        return 1.0 if ((a != 0.0) != (b != 0.0)) else 0.0
    raise error(f"Unknown operation {op}")  # pragma: no cover - guarded by read_operator


def apply_unary(name: str, x: float, error: Callable[[str], GCodeError]) -> float:
    try:
        if name == "abs":
            return abs(x)
        if name == "acos":
            if x < -1.0 or x > 1.0:
                raise error("Argument to acos out of range")
            return math.degrees(math.acos(x))
        if name == "asin":
            if x < -1.0 or x > 1.0:
                raise error("Argument to asin out of range")
            return math.degrees(math.asin(x))
        if name == "cos":
            return math.cos(math.radians(x))
        if name == "exp":
            return math.exp(x)
        if name == "fix":
            return float(math.floor(x))
        if name == "fup":
            return float(math.ceil(x))
        if name == "ln":
            if x <= 0.0:
                raise error("Zero or negative argument to ln")
            return math.log(x)
        if name == "round":
            return float(math.floor(x + 0.5)) if x >= 0 else -float(math.floor(-x + 0.5))
        if name == "sin":
            return math.sin(math.radians(x))
        if name == "sqrt":
            if x < 0.0:
                raise error("Negative argument to sqrt")
            return math.sqrt(x)
        if name == "tan":
            return math.tan(math.radians(x))
    except OverflowError:
        return math.inf
    raise error(f"Unknown unary operation {name}")  # pragma: no cover


def check_finite(value: float, error: Callable[..., GCodeError], pos: int | None = None) -> float:
    """LinuxCNC rejects every infinite or NaN result as soon as it is computed."""
    if math.isnan(value):
        raise error("Calculation resulted in 'not a number'", pos)
    if math.isinf(value):
        raise error("Calculation resulted in 'infinity'", pos)
    return value


def read_line(raw: str, line_no: int, params: ParameterReader) -> Block:
    """Read one raw program line into a Block, raising GCodeError with its column."""
    if len(raw) > MAX_LINE_LENGTH:
        raise GCodeError("Command too long", line_no, MAX_LINE_LENGTH + 1)
    text, cols = clean_line(raw, line_no)
    if not text:
        return Block(line_no)
    return LineParser(text, cols, line_no, params).read_block()
