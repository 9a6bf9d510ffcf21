"""The machine page's remote-control panel: pre-flight, program, motion, overrides, audit.

Every action goes through the hub's command service (``hub.commands.CommandService``),
the same checks the REST routes make: the role, a passing pre-flight of the very program
for a cycle start, the signature and the edge's own checks (site permit, interlocks).
The panel adds a confirmation before anything that moves the machine and shows each
command's state as the edge answers (sent, accepted, rejected with the reason, done).

The site permit: each edge reports its machine's permit (retained, on change and every
few seconds, ``CommandService.gate``). Buttons that change the machine's state or move
it are disabled, with the reason on the permit line, while there is no permit, the
machine's edge is offline or its report lapsed; feed hold and stop stay enabled for
operators whatever the permit (stopping is always allowed). The edge checks again.
"""

from __future__ import annotations

import math
import time
from typing import Any

from nicegui import run, ui

from ..hub.commands import CommandRefused, CommandStatus, ControlGate
from ..hub.preflight import live_position, preflight, program_sha256
from .app import ctx
from .context import UserLike

STATUS_S = 0.5
AUDIT_S = 2.0
AUDIT_ROWS = 50
COMMANDS_SHOWN = 12
JOG_DISTANCES = (0.01, 0.1, 1.0, 10.0)
JOG_FEED = 1000.0  # mm/min
OPERATOR = 2  # hub.auth.Role.OPERATOR (an IntEnum): compared as a number here
ANSWERED = ("accepted", "rejected", "done", "failed")
CHECKED_BEFORE_PERMIT = ("expired", "issued in the future")  # edge/executor's first checks

FINDING_COLUMNS = [
    {"name": c, "label": label, "field": c, "align": "left"}
    for c, label in (("line", "Line"), ("severity", "Severity"), ("kind", "Kind"),
                     ("message", "Finding"))
]  # fmt: skip
COMMAND_COLUMNS = [
    {"name": c, "label": label, "field": c, "align": "left"}
    for c, label in (("at", "Issued"), ("name", "Command"), ("state", "State"),
                     ("reason", "Reason"), ("rtt", "Answer after"))
]  # fmt: skip
AUDIT_COLUMNS = [
    {"name": c, "label": label, "field": c, "align": "left"}
    for c, label in (("seq", "#"), ("at", "Time"), ("actor", "Actor"), ("event", "Event"),
                     ("command", "Command"), ("detail", "Detail"))
]  # fmt: skip


def may_control(user: UserLike) -> bool:
    """Operators and above may command machines (the hub checks again on each command)."""
    return int(user.role) >= OPERATOR and ctx().commands is not None


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def command_row(status: CommandStatus) -> dict[str, Any]:
    """One command as the panel's table shows it."""
    c = status.command
    rtt = "–"
    if status.answered_mono is not None:
        rtt = f"{(status.answered_mono - status.sent_mono) * 1000.0:.0f} ms"
    return {"id": c.id, "at": _clock(c.issued_at), "name": c.name, "state": status.state,
            "reason": status.reason, "rtt": rtt}  # fmt: skip


def audit_detail(event: str, detail: dict[str, Any]) -> str:
    """One line for an audit entry's detail: the command or program, the verdict, the reason."""
    if event == "preflight":
        verdict = "passed" if detail.get("ok") else "refused"
        kinds = sorted({str(f.get("kind")) for f in detail.get("findings") or []})
        text = f"{detail.get('program', '')}: pre-flight {verdict}"
        text += f" ({', '.join(kinds)})" if kinds else ""
    else:
        text = " ".join(str(detail[k]) for k in ("name", "reason") if detail.get(k))
    return text[:160]


def permit_text(statuses: list[CommandStatus]) -> str | None:
    """The site permit as the site's newest answer to a state or motion command tells it
    (the edge checks the permit before the interlocks and the machine), or None."""
    for s in reversed(statuses):
        if s.command.spec.kind not in ("state", "motion") or s.state not in ANSWERED:
            continue
        if s.state == "rejected":
            if "permit" in s.reason:
                return f"site permit: refused — {s.reason}"
            if s.reason.startswith(CHECKED_BEFORE_PERMIT):
                continue  # refused before the permit was looked at: says nothing of it
        return f"site permit: active (the site let {s.command.name} through)"
    return None


def start_text(start: list[float] | None) -> str:
    """Where the pre-flight's twin started: the live position, or home when unknown."""
    if not start:
        return "from home (the machine's position is not known)"
    return "from the machine's position " + " ".join(
        f"{a}{v:.1f}" for a, v in zip("XYZ", start, strict=True)
    )


def permit_line(gate: ControlGate) -> str:
    """The permit line of the panel: what allows control, or why it is off."""
    if gate.allowed:
        return f"site permit: active — {gate.reason.removeprefix('site permit active ')}"
    return f"site permit: none — control is off: {gate.reason}"


def audit_rows(machine: str) -> list[dict[str, Any]]:
    """The machine's newest audit entries (a SQLite read: call it in a worker thread)."""
    service = ctx().commands
    if service is None:
        return []
    rows = []
    for e in service.audit.entries(machine, None, AUDIT_ROWS):
        rows.append({"seq": e.seq, "at": _clock(e.at), "actor": e.actor, "event": e.event,
                     "command": e.command_id[:8], "detail": audit_detail(e.event, e.detail)})  # fmt: skip
    return rows


class ControlPanel:
    """The control card of one machine page for one user."""

    def __init__(self, machine: str, user: UserLike) -> None:
        self.machine = machine
        self.user = user
        self.enabled = may_control(user)
        self.issued: list[str] = []  # command ids, newest last
        self.report: dict[str, Any] | None = None  # the last pre-flight's
        self.checked_text: str | None = None  # the text that pre-flight ran on
        self.controls: list[Any] = []
        self.gated: list[Any] = []  # controls that also need the site's permit
        self.gate: ControlGate | None = None
        self.announced = ""  # the command whose final answer the message shows

    # --- layout -----------------------------------------------------------------------------

    def build(self) -> None:
        with ui.card().classes("w-full").props('data-testid="control-panel"'):
            ui.label("Remote control").classes("text-subtitle1").props(
                'role="heading" aria-level="2"'
            )
            self._build_status()
            with ui.grid().classes("w-full gap-4 grid-cols-1 xl:grid-cols-2"):
                with ui.column().classes("min-w-0 gap-2"):
                    self._build_preflight()
                with ui.column().classes("min-w-0 gap-2"):
                    self._build_buttons()
                    self._build_override()
                    self._build_jog()
                    self._build_mdi()
            self._build_tables()
            self._build_dialog()
        for control in self.controls:
            control.set_enabled(self.enabled)
        self.gate_tick()
        ui.timer(STATUS_S, self.status_tick)
        ui.timer(AUDIT_S, self.audit_tick)
        ui.timer(0, self.audit_tick, once=True)

    def _build_status(self) -> None:
        with ui.row().classes("items-baseline gap-4"):
            if self.enabled:
                role = f"{self.user.username} may command this machine"
            elif ctx().commands is None:
                role = "remote control is not configured on this hub"
            else:
                name = getattr(self.user.role, "name", str(self.user.role)).lower()
                role = f"role {name}: viewing only (commands need operator or above)"
            self.role_label = ui.label(role).props('data-testid="control-role"')
            self.permit = ui.label("site permit: not reported yet").props(
                'data-testid="permit-state" aria-live="polite"'
            )
            self.rtt = ui.label("command round trip –").props('data-testid="command-rtt"')
        self.message = (
            ui.label("")
            .classes("text-body2")
            .props('data-testid="control-message" role="status" aria-live="polite"')
        )

    def _build_preflight(self) -> None:
        ui.label("Program pre-flight (on the machine's twin)").classes("text-subtitle2")
        with ui.row().classes("items-end gap-2 w-full"):
            self.program_name = ui.input("Program name", value="remote.ngc").props(
                'dense aria-label="Program name"'
            )
            load = ui.button("Load the machine's program", on_click=self.load_machine_program)
            load.props("outline dense no-caps")
        self.program_text = (
            ui.textarea("Program text (RS274/NGC)")
            .classes("w-full font-mono")
            .props('outlined rows=8 aria-label="Program text to check" data-testid="program-input"')
        )
        run_check = ui.button("Run pre-flight", on_click=self.run_preflight).props("no-caps")
        self.verdict = ui.label("no pre-flight yet").props(
            'data-testid="preflight-verdict" role="status" aria-live="polite"'
        )
        self.findings = ui.table(rows=[], columns=FINDING_COLUMNS, row_key="n", pagination=8)
        self.findings.props('dense flat aria-label="Pre-flight findings"').classes("w-full")
        self.controls += [self.program_name, load, self.program_text, run_check]

    def _build_buttons(self) -> None:
        ui.label("Program and cycle").classes("text-subtitle2")
        buttons = (  # (text, action, colour, needs the site permit)
            ("Select program", self.select_program, "primary", True),
            ("Cycle start", self.cycle_start, "positive", True),
            ("Feed hold", lambda: self.send("feed_hold"), "warning", False),
            ("Resume", self.resume, "positive", True),
            ("Stop", lambda: self.send("stop"), "negative", False),
            ("Reset", lambda: self.send("reset"), "grey", True),
        )
        with ui.row().classes("gap-2").props('role="group" aria-label="Program and cycle"'):
            for text, action, color, gated in buttons:
                button = ui.button(text, on_click=action).props(f"color={color} no-caps")
                self.controls.append(button)
                if gated:
                    self.gated.append(button)

    def _build_override(self) -> None:
        with ui.row().classes("items-center gap-2 w-full"):
            ui.label("Feed override")
            self.override = ui.slider(min=0, max=150, step=5, value=100).classes("w-48")
            self.override.props('label-always aria-label="Feed override, percent"')
            apply = ui.button("Apply override", on_click=self.apply_override)
            apply.props("outline dense no-caps")
        self.controls += [self.override, apply]
        self.gated += [self.override, apply]

    def _build_jog(self) -> None:
        with ui.row().classes("items-center gap-2"):
            self.jog_distance = (
                ui.select({d: f"{d:g} mm" for d in JOG_DISTANCES}, value=1.0, label="Jog distance")
                .props('dense aria-label="Jog distance"')
                .classes("w-32")
            )
            self.controls.append(self.jog_distance)
            self.gated.append(self.jog_distance)
            with ui.row().classes("gap-1").props('role="group" aria-label="Jog"'):
                for axis in "XYZ":
                    for sign, arrow in ((-1, "−"), (1, "+")):
                        b = ui.button(
                            f"{axis}{arrow}", on_click=lambda a=axis, s=sign: self.jog(a, s)
                        )
                        b.props(f'outline dense aria-label="Jog {axis} {arrow}"')
                        self.controls.append(b)
                        self.gated.append(b)

    def _build_mdi(self) -> None:
        with ui.row().classes("items-end gap-2 w-full"):
            self.mdi_line = (
                ui.input("MDI line").classes("grow font-mono").props('dense aria-label="MDI line"')
            )
            self.mdi_line.on("keydown.enter", self.mdi)
            send = ui.button("Send MDI", on_click=self.mdi).props("outline no-caps")
        self.controls += [self.mdi_line, send]
        self.gated += [self.mdi_line, send]

    def _build_tables(self) -> None:
        ui.label("Commands").classes("text-subtitle2")
        self.commands = ui.table(rows=[], columns=COMMAND_COLUMNS, row_key="id")
        self.commands.props('dense flat aria-label="Commands sent from this page"').classes(
            "w-full"
        )
        ui.label("Audit trail of this machine").classes("text-subtitle2")
        self.audit = ui.table(rows=[], columns=AUDIT_COLUMNS, row_key="seq", pagination=20)
        self.audit.props('dense flat aria-label="Audit trail" data-testid="audit-table"').classes(
            "w-full"
        )

    def _build_dialog(self) -> None:
        with ui.dialog() as self.dialog, ui.card().props('role="alertdialog"'):
            self.dialog_text = ui.label("").props('data-testid="confirm-text"')
            with ui.row().classes("gap-2"):
                ui.button("Confirm", on_click=lambda: self.dialog.submit(True)).props(
                    "color=negative no-caps"
                )
                ui.button("Cancel", on_click=lambda: self.dialog.submit(False)).props(
                    "outline no-caps autofocus"
                )

    # --- actions ----------------------------------------------------------------------------

    async def confirm(self, text: str) -> bool:
        """Ask before motion: the machine moves in another city."""
        self.dialog_text.set_text(text)
        return bool(await self.dialog)

    async def send(self, name: str, args: dict[str, Any] | None = None) -> CommandStatus | None:
        """Issue one command; a refusal by the hub is shown, not raised."""
        service = ctx().commands
        if service is None or not self.enabled:
            self.message.set_text(f"{name}: you may not command this machine")
            return None
        try:
            status = await run.io_bound(service.issue, self.user, self.machine, name, args or {})
        except CommandRefused as exc:
            self.message.set_text(f"{name} refused by the hub: {exc.reason}")
            return None
        self.issued.append(status.command.id)
        self.message.set_text(f"{name} sent")
        self.status_tick()
        return status

    async def load_machine_program(self) -> None:
        program = await run.io_bound(ctx().program, self.machine)  # a store read
        if not program.text:
            self.message.set_text("the machine has not sent its program text")
            return
        self.program_name.set_value(program.name or "machine.ngc")
        self.program_text.set_value(program.text)

    async def run_preflight(self) -> None:
        name, text = (self.program_name.value or "").strip(), self.program_text.value or ""
        if not name or not text.strip():
            self.verdict.set_text("pre-flight needs a program name and text")
            return
        service = ctx().commands
        if service is None:
            return
        self.verdict.set_text("pre-flight running on the twin …")
        start = live_position(ctx().machine_state(self.machine))  # where the tool is now
        report = (await run.io_bound(preflight, name, text, ctx().machine_config,
                                     True, start)).as_dict()  # fmt: skip
        try:
            await run.io_bound(service.record_preflight, self.user, self.machine, name,
                               report["sha256"], report)  # fmt: skip
        except CommandRefused as exc:  # not audited: it allows no start
            self.verdict.set_text(f"pre-flight not recorded: {exc.reason}")
            return
        self.report, self.checked_text = report, text
        self._show_report(report)
        await self.audit_tick()

    def _show_report(self, report: dict[str, Any]) -> None:
        estimate = report["cycle_time_s"]
        cycle = f"estimated cycle time {estimate:.1f} s" if estimate is not None else "no estimate"
        refusals = sum(f["severity"] == "refuse" for f in report["findings"])
        verdict = "passed" if report["ok"] else f"failed ({refusals} finding(s) refuse a start)"
        self.verdict.set_text(f"pre-flight {verdict}: {report['program']}, {cycle}, "
                              f"{start_text(report.get('start'))}")  # fmt: skip
        self.findings.rows = [{"n": k, **f} for k, f in enumerate(report["findings"])]
        self.findings.update()

    def _checked(self) -> dict[str, Any] | None:
        """The last pre-flight, if it ran on the text now in the editor."""
        if self.report is None or self.checked_text != (self.program_text.value or ""):
            self.message.set_text("run the pre-flight on this program text first")
            return None
        return self.report

    async def select_program(self) -> None:
        report = self._checked()
        if report is None:
            return
        # transferred with its checksum: the machine verifies what arrived
        text = self.checked_text or ""
        await self.send("select_program", {"program": report["program"], "text": text,
                                           "sha256": program_sha256(text)})  # fmt: skip

    async def cycle_start(self) -> None:
        report = self._checked()
        if report is None:
            return
        if not await self.confirm(
            f"Start {report['program']} on {self.machine}? The machine moves."
        ):
            return
        status = await self.send("cycle_start", {"program_sha256": report["sha256"]})
        if status is None and not report["ok"]:
            first = next(f for f in report["findings"] if f["severity"] == "refuse")
            self.message.set_text(f"{self.message.text}; pre-flight: line {first['line']}: "
                                  f"{first['message']}")  # fmt: skip

    async def resume(self) -> None:
        if await self.confirm(f"Resume the held program on {self.machine}? The machine moves."):
            await self.send("resume")

    async def apply_override(self) -> None:
        await self.send("feed_override", {"percent": float(self.override.value)})

    async def jog(self, axis: str, sign: int) -> None:
        distance = sign * float(self.jog_distance.value or 0.0)
        if not await self.confirm(f"Jog {axis} by {distance:+g} mm on {self.machine}?"):
            return
        await self.send("jog", {"axis": axis.lower(), "distance": distance, "feed": JOG_FEED})

    async def mdi(self) -> None:
        line = (self.mdi_line.value or "").strip()
        if not line:
            self.message.set_text("MDI: type one line of G-code first")
            return
        if await self.confirm(f"Run MDI '{line}' on {self.machine}? The machine may move."):
            await self.send("mdi", {"line": line})

    # --- updates ----------------------------------------------------------------------------

    def gate_tick(self) -> None:
        """The site permit as the edge reports it: gated controls follow it."""
        service = ctx().commands
        if service is None:
            return
        gate = service.gate(self.machine)
        if gate == self.gate:
            return
        self.gate = gate
        self.permit.set_text(permit_line(gate))
        for control in self.gated:
            control.set_enabled(self.enabled and gate.allowed)

    def status_tick(self) -> None:
        """The permit gate and each command's latest answer (in memory: no I/O)."""
        self.gate_tick()
        service = ctx().commands
        if service is None or not self.issued:
            return
        statuses = [s for s in map(service.status, self.issued[-COMMANDS_SHOWN:]) if s]
        rows = [command_row(s) for s in reversed(statuses)]
        if rows != self.commands.rows:
            self.commands.rows = rows
            self.commands.update()
        self._announce(statuses[-1])
        answered = [s for s in statuses if s.answered_mono is not None]
        if answered:
            ms = (answered[-1].answered_mono - answered[-1].sent_mono) * 1000.0  # type: ignore[operator]
            text = f"command round trip {ms:.0f} ms" if math.isfinite(ms) else "–"
            if self.rtt.text != text:
                self.rtt.set_text(text)

    def _announce(self, status: CommandStatus) -> None:
        """The newest command's answer in the live region (screen readers hear it)."""
        if status.state == "sent":
            return
        text = f"{status.command.name}: {status.state}"
        text += f" — {status.reason}" if status.state in ("rejected", "failed") else ""
        if self.message.text != text and status.command.id != self.announced:
            self.announced = status.command.id if status.state in ANSWERED[1:] else ""
            self.message.set_text(text)

    async def audit_tick(self) -> None:
        if not self.enabled:
            return
        rows = await run.io_bound(audit_rows, self.machine)
        if rows is not None and rows != self.audit.rows:
            self.audit.rows = rows
            self.audit.update()
