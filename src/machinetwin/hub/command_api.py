"""REST routes of remote control, added to the hub's API by ``create_api(commands=...)``.

- ``POST /api/machines/{m}/preflight`` (operator): run a program on the machine's twin,
  from the machine's live position when the hub knows it; the findings, the cycle-time estimate and the program's SHA-256, which a later
  ``cycle_start`` must name (``args.program_sha256``).
- ``POST /api/machines/{m}/commands`` (operator; some commands need more, see
  ``model.commands.COMMANDS``): check, sign and send; 202 with the command's status.
  403 below the command's role, 409 for a start without a passing pre-flight, 422 for
  an unknown command or bad arguments, 404 for an unknown machine, 503 without remote
  control on this hub. Every refusal is in the audit log too.
- ``GET /api/machines/{m}/commands/{id}`` (viewer): the latest answer of the edge.
- ``POST /api/machines/{m}/commands/{id}/heartbeat`` (the motion's issuer): keeps a
  dead-man motion alive.
- ``GET /api/audit`` (maintainer): audit entries, newest first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from ..machine.config import MachineConfig
from ..model.commands import MAX_TTL_S
from .auth import Role, User
from .commands import CommandRefused, CommandService, CommandStatus
from .preflight import MAX_PROGRAM_BYTES, preflight, program_sha256

MachineCheck = Callable[[str], object]  # raises HTTPException(404) for an unknown machine
MachineConfigOf = Callable[[str], MachineConfig]


class CommandIn(BaseModel):
    name: str = Field(description="Command name, e.g. feed_hold, resume, cycle_start")
    args: dict[str, Any] = Field(default_factory=dict)
    ttl_s: float | None = Field(None, gt=0, le=MAX_TTL_S, description="Validity, s")


class ReplyOut(BaseModel):
    status: str
    reason: str
    at: float


class CommandOut(BaseModel):
    id: str
    machine: str
    name: str
    issuer: str
    issued_at: float
    expires_at: float
    args: dict[str, Any]
    state: str = Field(description="sent, accepted, rejected, done, failed or duplicate")
    reason: str
    replies: list[ReplyOut]


class PreflightIn(BaseModel):
    program: str = Field(min_length=1, max_length=255, description="Program name")
    text: str = Field(max_length=MAX_PROGRAM_BYTES, description="Program text (RS274/NGC)")


class FindingOut(BaseModel):
    kind: str
    severity: str
    line: int
    message: str


class PreflightOut(BaseModel):
    ok: bool
    program: str
    sha256: str
    cycle_time_s: float | None
    simulated: bool
    start: list[float] | None = Field(
        None, description="Where the run started (machine mm): the live position; null: home"
    )
    findings: list[FindingOut]


class AuditOut(BaseModel):
    seq: int
    at: float
    actor: str
    machine: str
    command_id: str
    event: str
    detail: dict[str, Any]
    hash: str


def add_command_routes(app: FastAPI, service: CommandService | None, require_machine: MachineCheck,
                       machine_config: MachineConfigOf, require_role: Callable[[Role], Any]) -> None:  # fmt: skip
    """Register the routes (``require_role``: the API's role dependency factory)."""

    def svc() -> CommandService:
        if service is None:
            raise HTTPException(503, "remote control is not configured on this hub")
        return service

    operator, viewer = Depends(require_role(Role.OPERATOR)), Depends(require_role(Role.VIEWER))

    @app.post("/api/machines/{machine_id}/preflight", response_model=PreflightOut, tags=["control"])
    def run_preflight(machine_id: str, body: PreflightIn, user: User = operator) -> PreflightOut:
        """Run the program on the machine's twin: findings and cycle-time estimate."""
        s = svc()
        require_machine(machine_id)
        start = s.position_of(machine_id) if s.position_of is not None else None
        report = preflight(body.program, body.text, machine_config(machine_id),
                           start=start).as_dict()  # fmt: skip
        try:
            s.record_preflight(user, machine_id, body.program, program_sha256(body.text), report)
        except CommandRefused as exc:
            raise HTTPException(exc.status, exc.reason) from None
        return PreflightOut(**report)

    @app.post("/api/machines/{machine_id}/commands", response_model=CommandOut, status_code=202,
              tags=["control"])  # fmt: skip
    def issue_command(machine_id: str, body: CommandIn, user: User = operator) -> CommandOut:
        """Check, sign and send a command to the machine's edge."""
        s = svc()
        if not s.knows(machine_id):  # its edge reported to the command service: known
            require_machine(machine_id)  # a store query: only for machines without reports
        try:
            return _out(s.issue(user, machine_id, body.name, body.args, body.ttl_s))
        except CommandRefused as exc:
            raise HTTPException(exc.status, exc.reason) from None

    @app.get("/api/machines/{machine_id}/commands/{command_id}", response_model=CommandOut,
             tags=["control"], dependencies=[viewer])  # fmt: skip
    def command_status(machine_id: str, command_id: str) -> CommandOut:
        """The command and every answer of the edge so far."""
        status = svc().status(command_id)
        if status is None or status.command.machine != machine_id:
            raise HTTPException(404, f"no command {command_id} on {machine_id}")
        return _out(status)

    @app.post("/api/machines/{machine_id}/commands/{command_id}/heartbeat", status_code=204,
              response_class=Response, tags=["control"])  # fmt: skip
    def heartbeat(machine_id: str, command_id: str = PathParam(max_length=64),
                  user: User = operator) -> Response:  # fmt: skip
        """Keep a dead-man motion alive (send at its deadman_s period)."""
        try:
            svc().heartbeat(user, machine_id, command_id)
        except CommandRefused as exc:
            raise HTTPException(exc.status, exc.reason) from None
        return Response(status_code=204)

    @app.get("/api/audit", response_model=list[AuditOut], tags=["control"],
             dependencies=[Depends(require_role(Role.MAINTAINER))])  # fmt: skip
    def audit(machine: str | None = Query(None), command_id: str | None = Query(None),
              limit: int = Query(200, ge=1, le=10_000)) -> list[AuditOut]:  # fmt: skip
        """Audit entries (every command, check and answer), newest first."""
        entries = svc().audit.entries(machine, command_id, limit)
        return [AuditOut(seq=e.seq, at=e.at, actor=e.actor, machine=e.machine,
                         command_id=e.command_id, event=e.event, detail=e.detail, hash=e.hash)
                for e in entries]  # fmt: skip


def _out(status: CommandStatus) -> CommandOut:
    return CommandOut(**status.as_dict())
