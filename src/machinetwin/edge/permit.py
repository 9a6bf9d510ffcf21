"""The site's grant of remote operation: ``machinetwin edge permit MACHINE --minutes N``.

The person at the machine decides whether the lab may operate it, for how long, and
can take it back (``--revoke``). The grant lives in a small SQLite file at the site,
which only the local user running the edge may write: the file is created with mode
0600 and is refused (as "no permit") when it belongs to someone else or when group
or others may write it, so nothing arriving over the network can create a permit.
Without a valid permit the executor refuses every command that moves the machine or
changes its state, whatever the hub says; stopping is always allowed.
"""

from __future__ import annotations

import contextlib
import getpass
import math
import os
import re
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import typer

from ..errors import MachinetwinError
from ..model.commands import PermitReport

MAX_MINUTES = 12 * 60  # a shift: a permit never outlives the person who granted it

_SCHEMA = """
CREATE TABLE IF NOT EXISTS permits (
    machine TEXT PRIMARY KEY,
    granted_by TEXT NOT NULL,
    granted_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
"""


class PermitError(MachinetwinError):
    """The permit file cannot be used; the message names the file and why."""


@dataclass(frozen=True, slots=True)
class Permit:
    machine: str
    granted_by: str
    granted_at: float
    expires_at: float

    def remaining_s(self, now: float) -> float:
        return self.expires_at - now


class PermitStore:
    """Permits of one site's machines in ``path`` (see the module docstring)."""

    def __init__(self, path: Path | str, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        self._cache: tuple[tuple[int, ...], dict[str, Permit]] | None = None

    # --- the local person's side -------------------------------------------------------------

    def grant(self, machine: str, minutes: float) -> Permit:
        """Allow remote operation of ``machine`` for ``minutes`` from now (replaces any)."""
        if not isinstance(minutes, int | float) or not math.isfinite(minutes):
            raise PermitError(f"--minutes must be a number, got {minutes!r}")
        if not 0 < minutes <= MAX_MINUTES:
            raise PermitError(f"--minutes must be in (0, {MAX_MINUTES}], got {minutes:g}")
        now = self.clock()
        permit = Permit(machine, getpass.getuser(), now, now + 60.0 * minutes)
        with self._open(create=True) as db:
            db.execute("INSERT OR REPLACE INTO permits VALUES (?, ?, ?, ?)",
                       (permit.machine, permit.granted_by, permit.granted_at, permit.expires_at))  # fmt: skip
        return permit

    def revoke(self, machine: str) -> bool:
        """End ``machine``'s permit now; False if it had none."""
        if not self.path.exists():
            return False
        with self._open(create=False) as db:
            return db.execute("DELETE FROM permits WHERE machine = ?", (machine,)).rowcount > 0

    # --- the executor's side -------------------------------------------------------------------

    def active(self, machine: str) -> Permit | None:
        """The valid permit of ``machine`` or None (also for any problem with the file)."""
        try:
            permit = self._rows().get(machine)
        except (PermitError, sqlite3.Error):
            return None  # fail closed: a file we cannot trust grants nothing
        if permit is None:
            return None
        return permit if permit.granted_at <= self.clock() < permit.expires_at else None

    def _rows(self) -> dict[str, Permit]:
        """Every permit in the file, re-read whenever it changed: checked on every call by
        the file's identity and SQLite's file change counter (header bytes 24-27, bumped
        by every commit in rollback-journal mode; timestamps alone are too coarse), so a
        revoke counts at once and a burst of commands does not reopen the database."""
        st = self._check_file()
        with open(self.path, "rb") as f:
            header = f.read(28)
        key = (st.st_ino, st.st_size, st.st_mtime_ns, int.from_bytes(header[24:28], "big"))
        if self._cache is None or self._cache[0] != key:
            with self._open(create=False) as db:
                rows = db.execute("SELECT machine, granted_by, granted_at, expires_at FROM permits")
                self._cache = (key, {r[0]: Permit(*r) for r in rows.fetchall()})
        return self._cache[1]

    def why_not(self, machine: str) -> str:
        """Why ``machine`` has no valid permit (for the rejection reason)."""
        try:
            self._check_file()
        except PermitError as exc:
            return str(exc)
        return (f"no remote-operation permit for {machine} at this site "
                f"(grant one at the machine: machinetwin edge permit {machine} --minutes N)")  # fmt: skip

    def report(self, machine: str, period_s: float) -> PermitReport:
        """What the edge tells the hub about ``machine``'s permit now (fail closed: any
        problem with the file reports no permit, with the reason)."""
        now = self.clock()
        permit = self.active(machine)
        if permit is None:
            return PermitReport(machine, False, reason=self.why_not(machine), at=now,
                                period_s=period_s)  # fmt: skip
        return PermitReport(machine, True, permit.expires_at, permit.granted_by, at=now,
                            period_s=period_s)  # fmt: skip

    # --- the file ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _open(self, create: bool) -> Iterator[sqlite3.Connection]:
        if create and not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._check_file()
        try:
            db = sqlite3.connect(str(self.path), isolation_level=None, timeout=5.0)
            db.execute("PRAGMA synchronous=FULL")  # a revoke survives a power cut
            db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise PermitError(f"{self.path}: cannot open the permit file: {exc}") from None
        try:
            yield db
        finally:
            db.close()

    def _check_file(self) -> os.stat_result:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise PermitError(f"{self.path}: no permit file") from None
        if st.st_uid != os.getuid():
            raise PermitError(f"{self.path}: permit file belongs to uid {st.st_uid}, "
                              f"not to this user ({os.getuid()}): refused")  # fmt: skip
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise PermitError(f"{self.path}: permit file is writable by group or others "
                              f"(mode {stat.S_IMODE(st.st_mode):o}): refused")  # fmt: skip
        return st


# --- machinetwin edge [--config SITE.toml] permit MACHINE --minutes N | --revoke ---------------


def permit_file_for(site_file: Path | None) -> Path:
    """The permit file a site file names ([control] permit_file, relative to the file),
    or ``permits.sqlite`` in the current directory without one."""
    if site_file is None:
        return Path("permits.sqlite")
    from .agent import load_edge_config

    config = load_edge_config(site_file)
    control = getattr(config, "control", None)
    name = control.permit_file if control is not None else Path("permits.sqlite")
    return name if name.is_absolute() else Path(site_file).resolve().parent / name


def permit_command(
    ctx: typer.Context,
    machine: str = typer.Argument(..., help="Machine id, as in the site file"),
    minutes: float | None = typer.Option(None, "--minutes", "-m", help="Allow for this long"),
    revoke: bool = typer.Option(False, "--revoke", help="End the permit now"),
    file: Path | None = typer.Option(None, "--file", help="Permit file (default: the site's)"),
) -> None:
    """Allow (or revoke) remote operation of MACHINE from this site, for N minutes."""
    if (minutes is None) == (not revoke):
        raise typer.BadParameter("give either --minutes N or --revoke")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", machine):
        raise typer.BadParameter(f"invalid machine id {machine!r}", param_hint="MACHINE")
    site_file = (ctx.obj or {}).get("edge_config") if ctx is not None else None
    store = PermitStore(file or permit_file_for(site_file))
    try:
        if revoke:
            had = store.revoke(machine)
            typer.echo(f"{machine}: remote operation revoked" if had else f"{machine}: no permit")
            return
        assert minutes is not None
        permit = store.grant(machine, minutes)
    except PermitError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(permit.expires_at))
    typer.echo(f"{machine}: remote operation allowed until {until} (granted by "
               f"{permit.granted_by}; file {store.path})")  # fmt: skip
