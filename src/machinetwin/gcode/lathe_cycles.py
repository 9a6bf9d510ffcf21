"""Lathe cycles G70 (finishing), G71/G71.1/G71.2 (roughing along Z) and G72/G72.1/G72.2
(roughing along X), as LinuxCNC 2.9 does them (its ``interp_g7x.cc``).

``G7x Q<n> X Z ...`` first rapids to X Z, then reads subroutine ``o<n>`` without
executing it: its G0-G3 lines (with A fillets and C chamfers at corners) make the
finished profile, in the ZX plane. The cycle then cuts it:

- G71 turns the profile into horizontal passes ``I`` apart, each a feed into the stock,
  a 45-degree escape of ``R`` and a rapid back, then follows the profile; pockets (a
  profile going back up) are cut after it (G71.1 skips them, G71.2 does only them);
- G72 is the same rotated by 90 degrees (facing);
- G70 runs the profile offset by ``D`` (first pass) down to ``E`` (last) in ``P``
  passes, and is the one that may run under cutter compensation.

Points are complex numbers ``z + x*1j`` as in LinuxCNC. The profile is first mirrored
and turned so that it runs towards -Z with X falling; the moves are mirrored back on the
way out (:class:`Swapped`). The geometry here follows LinuxCNC's step for step,
including its tolerances, so that the calls agree with rs274's.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING

from . import canon
from .reader import Block, read_line

if TYPE_CHECKING:
    from .interpreter import Interpreter

TOL = 1e-6
MAX_STEPS = 200_000  # passes and offset steps: a bound for profiles that never converge
CODES = (700, 710, 711, 712, 720, 721, 722)


class G7xError(Exception):
    """A geometric failure; reported as ``G7X error: <text>`` like LinuxCNC."""


def conj(z: complex) -> complex:
    return z.conjugate()


def norm(z: complex) -> float:
    return z.real * z.real + z.imag * z.imag


def c_sqrt(v: float) -> float:
    return math.sqrt(v) if v >= 0 else math.nan  # C's sqrt of a negative: NaN


# --- profile segments ------------------------------------------------------------------


class Segment:
    """A profile element from ``start`` to ``end``; ``finish`` is a pending corner size."""

    def __init__(self, start: complex, end: complex) -> None:
        self.start = start
        self.end = end
        self.finish = 0.0

    def dup(self) -> Segment:
        return copy.copy(self)

    def monotonic(self) -> bool:
        return (self.end - self.start).real <= 1e-3

    def do_finish(self, prev: Segment, nxt: Segment) -> None:
        pass

    def flip_imag(self) -> None:
        self.start, self.end = conj(self.start), conj(self.end)

    def flip_real(self) -> None:
        self.start, self.end = -conj(self.start), -conj(self.end)

    def rotate(self) -> None:
        self.start, self.end = -self.start * 1j, -self.end * 1j

    def move(self, d: complex) -> None:
        self.start += d
        self.end += d

    def corner_finish(self, prev: Segment, nxt: Segment) -> complex:
        """Cut the corner between ``prev`` and ``nxt`` by ``finish``; the new corner's middle."""
        p, n = prev.dup(), nxt.dup()
        p.offset(self.finish)
        n.offset(self.finish)
        if (p.end - n.start).real > 1e-2:
            self.finish = -self.finish
            p, n = prev.dup(), nxt.dup()
            p.offset(self.finish)
            n.offset(self.finish)
        if (p.end - n.start).real > 1e-2:
            raise G7xError(f"Corner finish failed at {fmt_point(prev.end)}")
        p.intersect(n)
        centre = (p.end + n.start) / 2.0
        p.offset(-self.finish)
        n.offset(-self.finish)
        self.start = prev.end = p.end
        self.end = nxt.start = n.start
        return centre

    # implemented by the two shapes
    def intersection_z(self, x: float, out: list[float]) -> None: ...
    def climb(self, loc: list[complex], out: Motion) -> bool: ...
    def dive(self, loc: list[complex], x: float, out: Motion, fast: bool) -> bool: ...
    def climb_only(self, loc: list[complex], out: Motion) -> None: ...
    def draw(self, out: Motion) -> None: ...
    def offset(self, distance: float) -> None: ...
    def intersect(self, p: Segment) -> None: ...
    def intersect_end(self, p: Segment) -> None: ...
    def radius(self) -> float: ...


class Straight(Segment):
    def intersection_z(self, x: float, out: list[float]) -> None:
        s, e = self.start, self.end
        if min(s.imag, e.imag) > x + TOL or max(s.imag, e.imag) < x - TOL:
            return
        if abs((s - e).imag) < TOL:
            out.append(s.real)
            out.append(e.real)
        else:
            out.append((x - s.imag) / (e.imag - s.imag) * (e.real - s.real) + s.real)

    def climb(self, loc: list[complex], out: Motion) -> bool:
        if self.end.imag + TOL < self.start.imag:
            return True  # not climbing
        if abs(loc[0] - self.start) > TOL:
            raise G7xError("How did we get here?")
        out.straight_move(self.end)
        loc[0] = self.end
        return False

    def climb_only(self, loc: list[complex], out: Motion) -> None:
        if self.end.imag < self.start.imag:
            return
        hits: list[float] = []
        self.intersection_z(loc[0].imag, hits)
        if not hits:
            return
        loc[0] = complex(hits[0], loc[0].imag)
        out.straight_move(loc[0])
        out.straight_move(self.end)
        loc[0] = self.end

    def dive(self, loc: list[complex], x: float, out: Motion, fast: bool) -> bool:
        if self.start.imag <= self.end.imag + TOL:
            return True  # not diving
        move = out.straight_rapid if fast else out.straight_move
        if x < self.end.imag:
            move(self.end)
            loc[0] = self.end
            return False
        hits: list[float] = []
        self.intersection_z(x, hits)
        if not hits:
            raise G7xError("x too large in straight dive")
        ep = complex(hits[0], x)
        move(ep)
        loc[0] = ep
        return False

    def draw(self, out: Motion) -> None:
        out.straight_move(self.end)

    def offset(self, distance: float) -> None:
        d = 1j * distance * (self.start - self.end) / abs(self.start - self.end)
        self.start += d
        self.end += d

    def radius(self) -> float:
        return abs(self.start - self.end)

    def intersect(self, p: Segment) -> None:
        p.intersect_end(self)

    def intersect_end(self, p: Segment) -> None:
        """Move the end of ``p`` and the start of this line to where they meet."""
        rot = conj(self.start - self.end) / abs(self.start - self.end)
        if isinstance(p, Round):
            if abs(self.start - p.end) < TOL:
                return
            pe = (p.end - self.end) * rot
            pc = (p.centre - self.end) * rot
            b = norm(pc - pe) - pc.imag * pc.imag
            b = 0.0 if b < 0 else math.sqrt(b)
            s1 = (pc.real + b) / rot + self.end
            s2 = (pc.real - b) / rot + self.end
            self.start = p.end = s1 if abs(self.start - s1) < abs(self.start - s2) else s2
            return
        ps = (p.start - self.end) * rot
        pe = (p.end - self.end) * rot
        if (ps - pe).imag == 0:
            raise G7xError("Cannot intersect parallel lines")
        f = ps.imag / (ps - pe).imag
        self.start = p.end = (ps + f * (pe - ps)) / rot + self.end


class Round(Segment):
    def __init__(self, ccw: bool, start: complex, centre: complex, end: complex) -> None:
        super().__init__(start, end)
        self.ccw = bool(ccw)
        self.centre = centre

    def offset(self, distance: float) -> None:
        r = abs(self.start - self.centre)
        factor = (r + (1 if self.ccw else -1) * distance) / r
        self.start = factor * (self.start - self.centre) + self.centre
        self.end = factor * (self.end - self.centre) + self.centre

    def radius(self) -> float:
        return min(abs(self.start - self.end), abs(self.start - self.centre))

    def flip_imag(self) -> None:
        self.ccw = not self.ccw
        self.start, self.end, self.centre = conj(self.start), conj(self.end), conj(self.centre)

    def flip_real(self) -> None:
        self.ccw = not self.ccw
        self.start, self.end = -conj(self.start), -conj(self.end)
        self.centre = -conj(self.centre)

    def rotate(self) -> None:
        self.start, self.end, self.centre = -self.start * 1j, -self.end * 1j, -self.centre * 1j

    def move(self, d: complex) -> None:
        self.start += d
        self.end += d
        self.centre += d

    def monotonic(self) -> bool:
        if self.finish != 0:
            return True
        entry = (self.start - self.centre).imag
        leave = (self.end - self.centre).imag
        dz = (self.end - self.start).real
        if self.ccw:
            return entry >= -1e-3 and leave >= -1e-3 and dz <= -1e-3
        return entry <= 1e-3 and leave <= 1e-3 and dz <= -1e-3

    def on_segment(self, p: complex) -> bool:
        a = (conj(self.start - self.centre) * (p - self.centre)).imag
        b = (conj(self.end - self.centre) * (p - self.centre)).imag
        if self.ccw:
            return a >= -TOL and b <= TOL
        return a <= TOL and b >= -TOL

    def intersection_z(self, x: float, out: list[float]) -> None:
        r = abs(self.start - self.centre)
        c = self.centre
        s = -(x - r - c.imag) * (x + r - c.imag)
        if s < -TOL:
            return
        s = math.sqrt(max(s, 0.0))
        p1 = complex(c.real + s, x)
        if self.on_segment(p1):
            out.append(p1.real)
        p2 = complex(c.real - s, x)
        if self.on_segment(p2):
            out.append(p2.real)

    def top_end(self) -> complex:
        """The end, or the arc's top if it goes past it (a G3 climbing over its centre)."""
        if self.end.real < self.centre.real:
            return complex(self.centre.real, self.centre.imag + abs(self.start - self.centre))
        return self.end

    def climb(self, loc: list[complex], out: Motion) -> bool:
        if not self.ccw:  # G2
            if loc[0].real > self.centre.real:
                return True
            if abs(loc[0] - self.end) > 1e-3:
                out.circular_move(self.ccw, self.centre, self.end)
            loc[0] = self.end
            return False
        if loc[0].real < self.centre.real:
            return True
        ep = self.top_end()
        if abs(loc[0] - ep) > 1e-3:
            out.circular_move(self.ccw, self.centre, ep)
        loc[0] = ep
        return True

    def dive(self, loc: list[complex], x: float, out: Motion, fast: bool) -> bool:
        if abs(loc[0] - self.end) < TOL or (loc[0] - self.end).real <= TOL:
            loc[0] = self.end
            return False
        hits: list[float] = []
        self.intersection_z(x, hits)
        if not hits:
            self.intersection_z(x - TOL, hits)
        c = self.centre
        if self.ccw:  # G3
            if loc[0].real - TOL > c.real:
                return True
            if not hits or hits[-1] > c.real:
                out.circular_move(self.ccw, c, self.end)
                loc[0] = self.end
            else:
                ep = complex(hits[-1], x)
                out.circular_move(self.ccw, c, ep)
                loc[0] = ep
            return False
        if loc[0].real <= c.real:
            return True  # already climbing
        if not hits:  # the curve is not hit: to its end
            out.circular_move(self.ccw, c, self.end)
            loc[0] = self.end
        elif hits[0] < c.real:
            pass  # hit on the back side only: the pocket steps x down
        else:  # cut twice: to the front intersection
            ep = complex(hits[0], x)
            out.circular_move(self.ccw, c, ep)
            loc[0] = ep
        return False

    def climb_only(self, loc: list[complex], out: Motion) -> None:
        hits: list[float] = []
        self.intersection_z(loc[0].imag, hits)
        if not hits:
            return
        if not self.ccw:  # G2
            if hits[-1] > self.centre.real:
                return
            loc[0] = complex(hits[-1], loc[0].imag)
            out.straight_move(loc[0])
            if abs(loc[0] - self.end) > 1e-3:
                out.circular_move(self.ccw, self.centre, self.end)
            loc[0] = self.end
            return
        if hits[0] < self.centre.real:
            return
        loc[0] = complex(hits[0], loc[0].imag)
        out.straight_move(loc[0])
        ep = self.top_end()
        if abs(loc[0] - ep) > 1e-3:
            out.circular_move(self.ccw, self.centre, ep)
        loc[0] = ep

    def draw(self, out: Motion) -> None:
        out.circular_move(self.ccw, self.centre, self.end)

    def intersect(self, p: Segment) -> None:
        p.intersect_end(self)

    def intersect_end(self, p: Segment) -> None:
        """Move the end of ``p`` and the start of this arc to where they meet."""
        if isinstance(p, Round):
            a = abs(self.start - self.centre)
            b = abs(p.start - p.centre)
            c = abs(self.centre - p.centre)
            cos_b = (c * c + a * a - b * b) / 2.0 / a / c
            rot = complex(cos_b, math.sqrt(1 - min(cos_b * cos_b, 1.0)))
            p.end = self.start = rot * (p.centre - self.centre) / c * a + self.centre
            return
        if abs(self.start - p.end) < TOL:
            return
        rot = conj(p.start - p.end) / abs(p.start - p.end)
        pe = (self.end - p.end) * rot
        pc = (self.centre - p.end) * rot
        b = norm(pc - pe) - pc.imag * pc.imag
        b = 0.0 if b < 0 else math.sqrt(b)
        s1 = (pc.real + b) / rot + p.end
        s2 = (pc.real - b) / rot + p.end
        self.start = p.end = s1 if abs(self.start - s1) < abs(self.start - s2) else s2


class Fillet(Round):
    """An ``A`` word: a rounded corner of that radius (placed by do_finish)."""

    def __init__(self, size: float, at: complex) -> None:
        super().__init__(False, at, at, at)
        self.finish = size

    def do_finish(self, prev: Segment, nxt: Segment) -> None:
        self.centre = self.corner_finish(prev, nxt)
        self.ccw = (self.start - self.centre).imag > 0 or (self.end - self.centre).imag > 0
        self.finish = 0.0


class Chamfer(Straight):
    """A ``C`` word: a chamfered corner of that size."""

    def __init__(self, size: float, at: complex) -> None:
        super().__init__(at, at)
        self.finish = size

    def do_finish(self, prev: Segment, nxt: Segment) -> None:
        self.corner_finish(prev, nxt)


def fmt_point(z: complex) -> str:
    return f"({z.real:g},{z.imag:g})"  # C++'s ostream << complex


# --- output ------------------------------------------------------------------------------


class Motion:
    """Where the cycle's moves go (the interpreter, through :class:`Swapped`)."""

    def straight_move(self, end: complex) -> None: ...
    def straight_rapid(self, end: complex) -> None: ...
    def circular_move(self, ccw: bool, centre: complex, end: complex) -> None: ...


class Swapped(Motion):
    """Undoes the profile's mirroring (bits 1, 2) and quarter turn (bit 4) on output."""

    def __init__(self, out: Motion, state: int) -> None:
        self.out = out
        self.state = state

    def point(self, z: complex) -> complex:
        return {0: z, 1: -conj(z), 2: conj(z), 3: -z, 4: 1j * z, 5: conj(1j * z),
                6: -conj(1j * z), 7: -1j * z}[self.state]  # fmt: skip

    def straight_move(self, end: complex) -> None:
        self.out.straight_move(self.point(end))

    def straight_rapid(self, end: complex) -> None:
        self.out.straight_rapid(self.point(end))

    def circular_move(self, ccw: bool, centre: complex, end: complex) -> None:
        flipped = self.state in (1, 2, 5, 6)
        self.out.circular_move(ccw != flipped, self.point(centre), self.point(end))


# --- the profile and the cycles ------------------------------------------------------------


class Profile(list):
    """The profile's segments; the first runs from the cycle's start to the profile."""

    def __init__(self, segments=()) -> None:
        super().__init__(segments)
        self.delta = 0.5
        self.escape = complex(0.3, 0.3)
        self.flip_state = 0
        self.pocket_starts: list[complex] = []
        self.steps = 0

    def count_step(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise G7xError("the cycle does not converge on this profile")

    def copy_profile(self) -> Profile:
        other = Profile(s.dup() for s in self)
        other.delta, other.escape, other.flip_state = self.delta, self.escape, self.flip_state
        return other

    def rotate(self) -> None:
        for s in self:
            s.rotate()
        self.flip_state ^= 4

    def swap(self) -> None:
        """Mirror so that the profile runs with Z and X falling."""
        d = self[0].end - self[-1].end
        if d.imag > 0:
            for s in self:
                s.flip_imag()
            self.flip_state ^= 2
        if d.real < 0:
            for s in self:
                s.flip_real()
            self.flip_state ^= 1

    def motion(self, out: Motion) -> Swapped:
        return Swapped(out, self.flip_state)

    def check_monotonic(self) -> None:
        first = self[0]
        if (first.end - first.start).real > 0:
            first.start = complex(first.end.real, first.start.imag)
        for s in self:
            if not s.monotonic():
                raise G7xError("Not monotonic")

    def do_finish(self) -> None:
        for h in range(1, len(self) - 1):
            self[h].do_finish(self[h - 1], self[h + 1])
        self[:] = [s for s in self if s.radius() >= 1e-3]

    def do_g70(self, out: Motion, x, z, d, e, p) -> None:
        self[0].start = complex(z, x)
        path = self.copy_profile()
        path.pop(0)
        path.swap()
        for s in path:
            if not s.monotonic():
                path.rotate()
                path.swap()
                break
        path.check_monotonic()
        if path.flip_state & 4:
            self.rotate()
        self.swap()
        self.do_finish()
        self.check_monotonic()
        swapped = self.motion(out)
        for n in range(int(p), 0, -1):
            distance = (n - 1) * (d - e) / p + e
            path = self.copy_profile()
            path.add_distance(distance)
            swapped.straight_rapid(path[0].start)
            swapped.straight_rapid(path[0].end)
            for s in path[1:-1]:
                s.draw(swapped)
            path[-1].draw(swapped)

    def do_g71(self, out: Motion, cycle: int, x, z, u, w, d, i, r, turn: bool = False) -> None:
        self[0].start = complex(z, x)
        if turn:
            self.rotate()
        self.swap()
        self.do_finish()
        self.check_monotonic()
        self.add_distance(d)
        for s in self:
            s.move(complex(w, u))
        swapped = self.motion(out)
        self.delta = max(i, 2 * TOL)
        self.escape = r * complex(1, 1)
        swapped.straight_rapid(self[0].start)
        if self[-1].end.imag < self[0].start.imag:
            ep = complex(self[-1].end.real, self[0].start.imag)
            self.append(Straight(self[-1].end, ep))
        self.pocket_starts.append(self[0].start)
        self.pocket(cycle, self[0].start, 0, swapped)

    def pocket(self, cycle: int, location: complex, p: int, out: Motion) -> None:
        x = self.pocket_starts[-1].imag
        loc = [location]
        if cycle == 2:  # skip the first roughing pass
            while p < len(self):
                if self[p].dive(loc, -1e9, out, p == 0):
                    break
                p += 1
            cycle = 3
        while p < len(self):
            self.count_step()
            while x - TOL > loc[0].imag:
                x -= self.delta
            if self[p].dive(loc, x, out, p == 0):
                if cycle == 1:  # along the final contour, and done
                    while p < len(self):
                        self[p].climb_only(loc, out)
                        p += 1
                    return
                while p < len(self):  # along the contour to the next pocket
                    if self[p].climb(loc, out):
                        if cycle == 3:
                            starts = self.pocket_starts
                            if loc[0].imag > starts[-1].imag and len(starts) > 1:
                                starts.pop()
                            if len(starts) == 1:
                                starts.append(loc[0])
                        self.pocket(cycle, loc[0], p, out)
                        return
                    p += 1
                return
            if abs(loc[0].imag - x) > TOL:
                p += 1  # x is beyond this segment: on to the next
                continue
            p, x = self.cut_pass(p, x, loc, out)

    def cut_pass(self, p: int, x: float, loc: list[complex], out: Motion) -> tuple[int, float]:
        """One horizontal pass from ``loc`` to the profile, escape, back; the next x."""
        location = loc[0]
        for ip in range(p, len(self)):
            hits: list[float] = []
            self[ip].intersection_z(location.imag, hits)
            if not hits:
                continue
            dest_z = hits[0] if ip != p else hits[-1]  # the diving arc may be hit
            distance = abs(dest_z - location.real)
            if dest_z - TOL > location.real:
                continue  # the diving curve at the starting point only
            if distance < TOL:
                if p == ip:
                    continue
                if abs(location - self[ip].start) < TOL:
                    return ip, x  # another curve, at its entry point: go on with it
                return p, x - self.delta  # a zero length segment: done
            dest = complex(dest_z, location.imag)
            out.straight_move(dest)
            scale = min(1.0, distance / 2 / self.escape.real)  # short cuts escape less
            out.straight_rapid(dest + scale * self.escape)
            out.straight_rapid(location - conj(scale * self.escape))
            if p == 0:
                out.straight_rapid(location)
            else:
                out.straight_move(location)
            return p, x - self.delta
        return p, x

    def add_distance(self, distance: float) -> None:
        """Offset the profile (not the approach) by ``distance``, in steps no larger than
        half the smallest segment, re-joining the segments after each step."""
        v1 = self[0].end - self[0].start
        v2 = self[-1].start - self[0].start
        if (v1 / v2).imag < 0:
            distance = -distance
        approach = self.pop(0)
        current = 0.0
        while current != distance:
            self.count_step()
            if not self:
                raise G7xError("the offset profile vanished")
            step = min([1e9] + [s.radius() / 2 for s in self])
            step = min(step, abs(distance - current))
            if distance < 0:
                step = -step
            kept = []
            for s in self:
                s.offset(step)
                if s.radius() >= 1e-3:
                    kept.append(s)
            self[:] = kept
            self.join_with_arcs(step, distance)
            self.intersect_all()
            current += step
        for k in range(len(self) - 1):
            mid = (self[k].end + self[k + 1].start) / 2.0
            self[k].end = self[k + 1].start = mid
        approach.end = self[0].start
        self.insert(0, approach)

    def join_with_arcs(self, step: float, distance: float) -> None:
        k = 0
        while k < len(self) - 1:
            a, b = self[k], self[k + 1]
            if (a.end - b.start).real > 1e-2:  # a gap opened at a convex corner
                s, e = a.dup(), b.dup()
                s.offset(-step)
                e.offset(-step)
                centre = (s.end + e.start) / 2.0
                self.insert(k + 1, Round(distance > 0, a.end, centre, b.start))
                k += 1
            k += 1

    def intersect_all(self) -> None:
        k = 0
        while k < len(self) - 1:
            self.count_step()
            if not self[k].monotonic():
                prev = k - 1
                if self[k].radius() < self[prev].radius():
                    del self[k]
                else:
                    del self[prev]
                k = 0
            if self[k].radius() < 1e-3:
                del self[k]
                k = 0
            else:
                self[k].intersect(self[k + 1])
            k += 1


# --- reading the profile and running the cycle ------------------------------------------


class InterpreterMotion(Motion):
    """Sends the cycle's moves through the interpreter (so compensation applies to G70)."""

    def __init__(self, interp: Interpreter) -> None:
        self.interp = interp

    def block(self, end: complex, **extra: float) -> Block:
        b = Block(self.interp.line, words={"x": end.imag, "z": end.real, **extra})
        b.empty = False
        return b

    def straight_move(self, end: complex) -> None:
        self.interp.cycle_move(10, self.block(end))

    def straight_rapid(self, end: complex) -> None:
        self.interp.cycle_move(0, self.block(end))

    def circular_move(self, ccw: bool, centre: complex, end: complex) -> None:
        s = self.interp.state
        if abs(s.position[2] - end.real) >= 0.0001 or abs(s.position[0] - end.imag) >= 0.0001:
            self.interp.cycle_move(30 if ccw else 20, self.block(end, i=centre.imag, k=centre.real))


def execute(interp: Interpreter, motion: int, block: Block) -> None:
    s = interp.state
    w = block.words
    if "q" not in w:
        raise interp.error("G7x.x  requires a Q word")
    cycle, subcycle = divmod(motion, 10)
    if s.comp_side and cycle != 70:
        raise interp.error(f"G{cycle}.{subcycle} cannot be used with cutter compensation enabled")
    if s.plane != 180:
        raise interp.error(f"G{cycle}.{subcycle} can only be used in XZ plane (G18)")
    incremental, arc_incremental = s.incremental, s.arc_incremental
    s.incremental = s.arc_incremental = False  # the cycle's own moves are absolute
    # errors are located where LinuxCNC locates them (the profile's last line read);
    # the message names the cycle's own line too
    where = f" (G{cycle}.{subcycle} cycle on line {interp.line})"
    try:
        run_cycle(interp, cycle, subcycle, block, incremental, arc_incremental)
    except G7xError as exc:
        raise interp.error(f"G7X error: {exc}{where}") from None
    except (ZeroDivisionError, IndexError, ValueError, OverflowError, RecursionError) as exc:
        # degenerate profiles (zero-length segments, a profile offset to nothing): LinuxCNC
        # computes on with NaNs; a clear error is more use
        raise interp.error(f"G7X error: degenerate profile ({exc}){where}") from None
    finally:
        s.incremental, s.arc_incremental = incremental, arc_incremental


def run_cycle(interp: Interpreter, cycle, subcycle, block: Block, incremental, arc_incremental):
    s = interp.state
    w = block.words
    x, z = s.position[0], s.position[2]
    if incremental:
        x += w.get("x", 0.0)
        z += w.get("z", 0.0)
    else:
        x, z = w.get("x", x), w.get("z", z)
    # to the cycle's start (words as absolute; compensated if compensation is on: rs274
    # 2.9 does not switch it off for this move)
    interp.cycle_move(0, block)
    path = read_profile(interp, w["q"], complex(z, x), incremental, arc_incremental)
    if len(path) <= 1:
        return
    d, e, i, p, r = (w.get(k, v) for k, v in (("d", 0.0), ("e", 0.0), ("i", 1.0), ("p", 1.0),
                                             ("r", 0.5)))  # fmt: skip
    u, wd = w.get("u", 0.0), w.get("w", 0.0)
    # (rs274 2.9 leaves the current point where reading the profile took it)
    if i <= 0:
        raise G7xError("I must be greater than zero.")
    out = InterpreterMotion(interp)
    if cycle == 70:
        path.do_g70(out, x, z, d, e, p)
    else:  # (rs274 2.9 does not close the profile back to the start level here)
        path.do_g71(out, subcycle, x, z, u, wd, d, i, r, turn=cycle == 72)


def read_profile(
    interp: Interpreter, q: float, start: complex, incremental: bool, arc_incremental: bool
) -> Profile:
    """Walk subroutine ``o<q>`` line by line (flow control and parameters run, nothing
    moves) and collect its moves; the current point follows the profile meanwhile."""
    s = interp.state
    path = Profile()
    exit_level = len(interp.frames)
    name = str(int(q)) if q == int(q) else repr(q)
    call = read_line(f"O{name} CALL", interp.line, interp.params)
    assert call.oword is not None
    interp.execute_oword(call.oword, call)
    while len(interp.frames) > exit_level:
        text = interp.current_source.next_line()
        if text is None:
            raise interp.error("File ended with no percent sign or program end")
        interp.line = interp.current_source.line_no
        blk = read_line(text, interp.line, interp.params)
        if s.diameter_mode and "x" in blk.words:
            blk.words["x"] /= 2
        if blk.oword is not None:
            interp.execute_oword(blk.oword, blk)
            continue
        if blk.param_settings:
            interp.params.set_many(blk.param_settings)
        start = add_profile_move(interp, path, blk, start, incremental, arc_incremental)
    return path


def add_profile_move(interp: Interpreter, path: Profile, blk: Block, start: complex,
                     incremental: bool, arc_incremental: bool) -> complex:  # fmt: skip
    s = interp.state
    w = blk.words
    end = 0j if incremental else start
    if "u" in w or "w" in w:
        raise interp.error("G7x error: U and W words are not supported here")
    if "x" in w:
        end = complex(end.real, w["x"])
    if "z" in w:
        end = complex(w["z"], end.imag)
    centre = complex(w.get("k", 0.0), w.get("i", 0.0))
    if incremental:
        end += start
    motions = [code for code, _ in blk.g_codes if code in (0, 10, 20, 30)]
    if motions:
        s.motion_mode = motions[0]
    if start == end:
        return start
    mode = s.motion_mode
    if mode in (0, 10):
        path.append(Straight(start, end))
    elif mode in (20, 30):
        if "r" in w:
            if "i" in w or "k" in w:
                raise G7xError("both R and I or K flag used for arc")
            r = w["r"]
            centre = (start + end) / 2.0
            d = 1j * c_sqrt((r * r - norm(end - start) / 4) / norm(end - start)) * (end - start)
            centre = centre + d if mode == 30 else centre - d
        else:
            if "i" not in w and "k" not in w:
                raise G7xError("either I or K must be present for arc")
            if arc_incremental:
                centre += start
        path.append(Round(mode == 30, start, centre, end))
    if mode in (0, 10, 20, 30):
        if "a" in w and "c" in w:
            raise G7xError("Both A and C parameters on a corner")
        if "a" in w:
            path.append(Fillet(w["a"], end))
        if "c" in w:
            path.append(Chamfer(w["c"], end))
    s.position[0], s.position[2] = end.imag, end.real
    return end


__all__ = ["CODES", "execute", "canon"]
