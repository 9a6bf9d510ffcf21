"""The hub's REST/WebSocket API: machines, live state, samples, alarms, export, ingest.

``create_api(store, live, users)`` builds the FastAPI app over a :class:`Store`, a
:class:`LiveView` (a function returning a copy of every machine's live state and the
ingest counters; ``live_view_from(ingest)`` makes one from a running
:class:`HubIngest`) and the hub's :class:`UserDirectory`. OpenAPI is at
``/openapi.json`` and the docs at ``/docs``.

Who may ask (fail closed):

- ``POST /api/login`` (JSON username and password) answers a session token and sets it
  as an HttpOnly, SameSite=Strict cookie; ``POST /api/logout`` ends it; ``GET /api/me``
  says who is logged in.
- Every other path under ``/api`` (HTTP and WebSocket, also routes added later) needs
  the session cookie or ``Authorization: Bearer <session or API token>``: a gate in
  front of the routes answers 401 (a WebSocket is closed with 1008) before any route
  runs. Without a user directory nobody gets in. ``/healthz`` and the OpenAPI docs
  stay open.
- Logins are limited per user (a lockout, kept by the directory) and per client
  address (:class:`LoginLimit`, 429 with Retry-After).
- Routes that need more than a login declare ``Depends(require_role(Role.X))`` and
  answer 403 to a lower role; other modules may reuse it on their own routes.

Where the answers come from, and why:

- Live values, online, last seen and latency come from the live view: they change every
  100 ms and the store would only lag behind.
- Alarms (also the active ones shown with the live state) come from the store: it is
  where acknowledgements and clears land and where alarm ids live, so the number a
  user sees next to a machine is the list they can acknowledge.
- Samples and exports come from the store, in the machine's clock (seconds).

Errors: bad input is a 422 (the same shape as FastAPI's own validation errors, naming
the parameter) or a 404 for an unknown machine or alarm; anything the store or the live
view fails at unexpectedly is a 503 with a message, never a 500.

Endpoints are plain ``def`` so FastAPI runs them in its thread pool: store reads are
blocking DuckDB calls and must not stall the event loop (and the WebSocket feeds).
"""

import asyncio
import contextlib
import logging
import math
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field, replace
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, Protocol, cast

from fastapi import (
    Depends,
    FastAPI,
    HTTPException,
    Query,
    Request,
    Response,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyCookie, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import MachinetwinError
from ..model import MachineDescriptor, signal_unit
from ..model.signals import SIGNALS, VIBRATION, Execution
from .auth import MAX_PASSWORD_LENGTH, AuthError, Role, User, UserDirectory
from .ingest import HubIngest, IngestCounters, LiveState
from .store import ExportFormat, Series, Store, StoredAlarm, StoreError

log = logging.getLogger(__name__)

MAX_BUCKETS = 10_000
MAX_ABS_TIME_S = 1e12  # ~31,700 years of epoch seconds: keeps bucket arithmetic finite
MIN_SPAN_S = 1e-6  # narrower ranges would make the bucket width underflow
DEFAULT_WS_INTERVAL_MS = 250
KNOWN_SIGNALS = frozenset(SIGNALS) | {VIBRATION.name}

# Kept in step with model.Severity / model.Execution (tests/hub/test_api.py checks):
# literal lists give the OpenAPI document real enums.
SeverityName = Literal["INFO", "WARNING", "FAULT", "CRITICAL"]
ExecutionName = Literal["READY", "ACTIVE", "INTERRUPTED", "STOPPED", "PROGRAM_COMPLETED", "UNKNOWN"]


class HubUnavailable(MachinetwinError):
    """The store or the live view failed at something that should have worked (→ 503)."""


# --- the live view: what ingest shares with the API ----------------------------------------


@dataclass(frozen=True, slots=True)
class LiveSnapshot:
    """A consistent copy of every machine's live state and the ingest counters."""

    machines: dict[str, LiveState] = field(default_factory=dict)
    counters: IngestCounters = field(default_factory=IngestCounters)
    taken_at: float = 0.0  # wall clock, s


class LiveView(Protocol):
    """Returns a fresh snapshot; called from worker threads, several times a second."""

    def __call__(self) -> LiveSnapshot: ...


def live_view_from(ingest: HubIngest) -> LiveView:
    """The live view of a running :class:`HubIngest`: copies taken under its lock."""

    def snapshot() -> LiveSnapshot:
        with ingest.lock:
            machines = {
                name: replace(s, values=dict(s.values), active_alarms=list(s.active_alarms))
                for name, s in list(ingest.live.items())
            }
        c = ingest.counters
        # The writer thread bumps these without the lock; dict(Counter) copies in one
        # C-level merge under the GIL, so the copy is never torn mid-iteration.
        counters = replace(c, rejected=type(c.rejected)(dict(c.rejected)))
        return LiveSnapshot(machines, counters, time.time())

    return snapshot


# --- response and request models ---------------------------------------------------------


class Problem(BaseModel):
    detail: str = Field(description="What went wrong, naming the machine, alarm or store call")


class Descriptor(BaseModel):
    machine_id: str
    name: str
    site: str
    model: str
    signals: list[str] = Field(
        description="Signals the machine declares besides the canonical ones"
    )
    axes: list[str]
    extra: dict[str, Any]


class LiveSummary(BaseModel):
    online: bool
    execution: ExecutionName
    line: int | None = Field(description="Program line being executed")
    spindle_load: float | None = Field(description="Spindle load, % of rated power")
    active_alarms: int
    last_seen: float | None = Field(description="Wall clock (s) of the last stored batch")
    latency_ms: float | None = Field(
        description="Arrival at the hub minus the newest sample's time, of the last batch"
    )


class MachineOut(BaseModel):
    machine_id: str
    descriptor: Descriptor | None = Field(description="None until the edge's birth message")
    live: LiveSummary


class AlarmOut(BaseModel):
    id: int
    machine: str
    code: str
    severity: SeverityName
    message: str
    source: str
    raised_at: float = Field(description="Machine clock, s")
    cleared_at: float | None
    active: bool
    acknowledged_at: float | None = Field(description="Wall clock, s")
    acknowledged_by: str | None
    comment: str | None


class MachineLiveOut(BaseModel):
    machine_id: str
    online: bool
    execution: ExecutionName
    values: dict[str, float] = Field(description="Latest value of every signal")
    alarms: list[AlarmOut] = Field(description="Active alarms, newest first")
    last_seen: float | None = Field(description="Wall clock (s) of the last stored batch")
    latency_ms: float | None
    batches: int = Field(description="Batches stored since the hub started")
    samples: int = Field(description="Samples stored since the hub started")


class FleetLiveOut(BaseModel):
    """One frame of the WebSocket feed ``/api/ws/live``."""

    t: float = Field(description="Wall clock of the snapshot, s")
    machines: list[MachineLiveOut]
    problem: str | None = Field(
        None, description="Set when part of the frame could not be read (alarms left empty)"
    )


class SeriesOut(BaseModel):
    signal: str
    unit: str | None
    raw: bool = Field(description="True: t are sample times and min == max == mean the values")
    t: list[float] = Field(description="Sample times, or start times of non-empty buckets")
    min: list[float]
    max: list[float]
    mean: list[float]
    count: list[int]


class SamplesOut(BaseModel):
    machine_id: str
    t0: float
    t1: float
    buckets: int
    series: list[SeriesOut] = Field(description="One per requested signal, empty if no samples")


class AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(
        None, min_length=1, max_length=200, pattern=r"\S",
        description="Optional; if given it must be the logged-in user, who is recorded",
    )  # fmt: skip
    comment: str | None = Field(None, max_length=4000)


RoleName = Literal["viewer", "operator", "maintainer", "admin"]


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(max_length=64)
    password: str = Field(max_length=MAX_PASSWORD_LENGTH)


class SessionOut(BaseModel):
    token: str = Field(description="Session token: send as `Authorization: Bearer <token>` "
                                   "(the login also sets it as a cookie)")  # fmt: skip
    username: str
    role: RoleName
    expires_in: float = Field(description="Seconds of inactivity after which the session ends")


class MeOut(BaseModel):
    username: str
    role: RoleName


class AccountOut(BaseModel):
    username: str
    role: RoleName
    disabled: bool
    locked_until: float | None = Field(description="Wall clock, s, while logins are locked out")
    tokens: list[str] = Field(description="Names of the user's API tokens")


class IngestOut(BaseModel):
    received: int
    stored: int
    duplicates: int
    samples: int
    acks_sent: int
    rejected: dict[str, int] = Field(description="Rejected messages by reason")
    rejected_total: int
    machines: int
    machines_online: int


class Health(BaseModel):
    status: Literal["ok"]
    machines: int


# --- who is asking ------------------------------------------------------------------------------

SESSION_COOKIE = "machinetwin_session"
SESSION_TTL_S = 8 * 3600.0
OPEN_API_PATHS = frozenset({"/api/login", "/api/logout"})  # the rest of /api needs a login
_USER_KEY = "machinetwin.user"  # where the gate leaves the user in the ASGI scope

# Declared only so that the OpenAPI document (and /docs' "Authorize") shows how to
# authenticate; the checking is done by _AuthGate and current_user.
_bearer_scheme = HTTPBearer(auto_error=False, description="Session token or API token")
_cookie_scheme = APIKeyCookie(name=SESSION_COOKIE, auto_error=False,
                              description="Set by POST /api/login")  # fmt: skip


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def _needs_login(scope: Scope) -> bool:
    path = scope.get("path", "")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]  # mounted under a prefix: judge the app's own path
    return (path == "/api" or path.startswith("/api/")) and path not in OPEN_API_PATHS


def identify(users: UserDirectory | None, conn: HTTPConnection) -> User | None:
    """Who sent the request: an ``Authorization: Bearer`` header (session or API
    token) or else the session cookie. A header that is there but not a valid bearer
    token is refused outright, never passed over for the cookie."""
    if users is None:
        return None
    header = conn.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        token = token.strip()
        return users.bearer_user(token) if scheme.lower() == "bearer" and token else None
    cookie = conn.cookies.get(SESSION_COOKIE)
    return users.session_user(cookie) if cookie else None


class _AuthGate:
    """ASGI middleware in front of every route: a path under /api (HTTP or WebSocket)
    that is not open gets through only with a valid session or token. Being in front
    of the router, it also covers routes added later that forget a dependency."""

    def __init__(self, app: ASGIApp, users: UserDirectory | None) -> None:
        self.app = app
        self.users = users

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not _needs_login(scope):
            await self.app(scope, receive, send)
            return
        try:
            user = await run_in_threadpool(identify, self.users, HTTPConnection(scope))
        except AuthError as exc:  # the directory's file failed: say so, never a 500
            log.error("api: %s", exc)
            await self._refuse(scope, receive, send, 503, f"cannot check the login: {exc}")
            return
        if user is not None:
            # Per request (a scope is never shared, unlike what "state" may hold).
            scope[_USER_KEY] = user
            await self.app(scope, receive, send)
        else:
            detail = "not logged in: send the session cookie or Authorization: Bearer <token>"
            if self.users is None:
                detail = "this hub has no user directory: nobody can log in"
            await self._refuse(scope, receive, send, 401, detail)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
        if scope["type"] == "websocket":
            # Closing before accepting: the server answers the handshake with 403.
            await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
            return
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        await JSONResponse({"detail": detail}, status, headers)(scope, receive, send)


async def current_user(
    conn: HTTPConnection,
    _bearer: Any = Depends(_bearer_scheme),
    _cookie: Any = Depends(_cookie_scheme),
) -> User:
    """The logged-in user (a dependency): the gate's finding, or, on a route outside
    /api, the request's own credentials; 401 if there are none. (``async`` so that
    the common case, the gate's finding, costs no trip to the thread pool.)"""
    user = conn.scope.get(_USER_KEY)
    if user is None:
        users = getattr(conn.app.state, "users", None)
        user = await run_in_threadpool(identify, users, conn)
    if user is None:
        raise _unauthorized(
            "not logged in: send the session cookie or Authorization: Bearer <token>"
        )
    return user


def require_role(role: Role) -> Callable[..., Coroutine[Any, Any, User]]:
    """A dependency that answers 401 without a login and 403 below ``role``, and
    gives the route the :class:`User` (``user: User = Depends(require_role(Role.X))``)."""

    async def dependency(user: User = Depends(current_user)) -> User:
        if user.role < role:
            raise HTTPException(
                403, f"{user.username} is {user.role.name.lower()}: this needs {role.name.lower()}"
            )
        return user

    dependency.__name__ = f"require_{role.name.lower()}"
    return dependency


class LoginLimit:
    """At most ``attempts`` logins per ``window_s`` from one client address, whatever
    the usernames: the per-user lockout alone would let one client try one password
    on every user (spraying). Kept in memory; the oldest addresses are forgotten
    beyond ``max_clients``, so a flood of addresses cannot exhaust memory."""

    def __init__(self, attempts: int = 30, window_s: float = 60.0, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        if attempts < 1 or not window_s > 0:
            raise ValueError(f"login limit needs attempts >= 1 and window_s > 0, "
                             f"got {attempts}, {window_s}")  # fmt: skip
        self.attempts, self.window_s, self.max_clients = attempts, window_s, max_clients
        self._clock = clock
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float:
        """0 and the attempt counted if ``client`` may try now, else the seconds to wait."""
        now = self._clock()
        with self._lock:
            times = self._seen.pop(client, None) or deque()
            while times and times[0] <= now - self.window_s:
                times.popleft()
            wait = times[0] + self.window_s - now if len(times) >= self.attempts else 0.0
            if not wait:
                times.append(now)
            self._seen[client] = times  # most recently seen last
            while len(self._seen) > self.max_clients:
                self._seen.popitem(last=False)
        return wait


def _role_name(role: Role) -> RoleName:
    return cast(RoleName, role.name.lower())


# --- the service behind the routes -----------------------------------------------------------


def _guarded(target: Any, name: str) -> Any:
    """``target`` with every method call turning an unexpected failure into
    :class:`HubUnavailable`, so no route can forget it and answer a 500. A
    :class:`StoreError` passes through: some routes map it to a 404."""

    class Guarded:
        def __getattr__(self, attr: str) -> Any:
            member = getattr(target, attr)
            return _guard_call(member, f"{name}.{attr}") if callable(member) else member

    return Guarded()


def _guard_call(fn: Callable[..., Any], what: str) -> Callable[..., Any]:
    @wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (StoreError, HubUnavailable):
            raise
        except Exception as exc:
            log.exception("api: %s failed", what)
            raise HubUnavailable(f"{what} failed: {type(exc).__name__}: {exc}") from exc

    return call


class _Hub:
    """What the routes ask for, over the store and the live view."""

    def __init__(self, store: Store, live: LiveView) -> None:
        self.store = cast(Store, _guarded(store, "store"))
        self._live = _guard_call(live, "live view")

    def snapshot(self) -> LiveSnapshot:
        return self._live()

    # --- machines ------------------------------------------------------------------------

    def machines(self) -> list[MachineOut]:
        snap = self.snapshot()
        descriptors = self._descriptors(snap)
        active = _count_by_machine(self.store.alarms(active=True))
        return [
            MachineOut(
                machine_id=m,
                descriptor=_descriptor_out(descriptors.get(m)),
                live=_summary(snap.machines.get(m), active.get(m, 0)),
            )
            for m in sorted(descriptors.keys() | snap.machines.keys())
        ]

    def _descriptors(self, snap: LiveSnapshot) -> dict[str, MachineDescriptor]:
        out = {d.machine_id: d for d in self.store.machines()}
        for m, state in snap.machines.items():
            if state.descriptor is not None:
                out[m] = state.descriptor  # the latest birth message wins
        return out

    def require_machine(self, machine: str, snap: LiveSnapshot) -> MachineDescriptor | None:
        """The machine's descriptor (None if it sent data but no birth yet); 404 if the
        hub has never heard of it."""
        descriptors = self._descriptors(snap)
        if machine in descriptors:
            return descriptors[machine]
        if machine in snap.machines or self.store.sequences(machine):
            return None
        raise HTTPException(404, f"unknown machine {machine!r}")

    def live(self, machine: str, snap: LiveSnapshot | None = None) -> MachineLiveOut:
        snap = snap or self.snapshot()
        self.require_machine(machine, snap)
        alarms = self.store.alarms(machine=machine, active=True)
        state = snap.machines.get(machine)
        if state is None or not state.values:
            # Not heard from since the hub started: the store still knows its last values.
            latest = self.store.latest(machine)
            state = replace(
                state or LiveState(machine), values={k: v for k, (_, v) in latest.items()}
            )
        return _live_out(state, alarms)

    def fleet(self) -> FleetLiveOut:
        snap = self.snapshot()
        problem = None
        try:
            alarms = _group_by_machine(self.store.alarms(active=True))
        except (StoreError, HubUnavailable) as exc:
            # A feed that stops because the store hiccups would blind the UI; say so instead.
            alarms, problem = {}, f"alarms unavailable: {exc}"
        machines = [_live_out(s, alarms.get(m, [])) for m, s in sorted(snap.machines.items())]
        return FleetLiveOut(t=snap.taken_at or time.time(), machines=machines, problem=problem)

    # --- samples and export --------------------------------------------------------------

    def signals_for(
        self, machine: str, descriptor: MachineDescriptor | None, requested: list[str] | None
    ) -> list[str]:
        """The requested signals (all with data when none asked), checked against what
        the machine can have: canonical, declared, or present in the store."""
        present = self.store.latest(machine).keys()
        if requested is None:
            return sorted(present)
        names = _split_names(requested)
        if not names:
            _invalid("signals", "name at least one signal (comma-separated)", requested)
        known = KNOWN_SIGNALS | set(descriptor.signals if descriptor else ()) | present
        unknown = [n for n in names if n not in known]
        if unknown:
            _invalid(
                "signals",
                f"unknown signal(s) for machine {machine!r}: {', '.join(unknown)}",
                requested,
            )
        return names

    def samples(
        self, machine: str, signals: list[str] | None, t0: float, t1: float, buckets: int
    ) -> SamplesOut:
        _check_range(t0, t1)
        descriptor = self.require_machine(machine, self.snapshot())
        names = self.signals_for(machine, descriptor, signals)
        got = self.store.query(machine, names, t0, t1, buckets) if names else {}
        series = [_series_out(n, got.get(n)) for n in names]
        return SamplesOut(machine_id=machine, t0=t0, t1=t1, buckets=buckets, series=series)

    def export(
        self, machine: str, t0: float, t1: float, fmt: ExportFormat, signals: list[str] | None
    ) -> FileResponse:
        _check_range(t0, t1)
        descriptor = self.require_machine(machine, self.snapshot())
        names = None if signals is None else self.signals_for(machine, descriptor, signals)
        filename = f"{_safe(machine)}_{t0:.3f}_{t1:.3f}.{fmt}"
        tmp = Path(tempfile.mkdtemp(prefix="machinetwin-export-"))
        try:
            self.store.export(machine, t0, t1, tmp / filename, fmt, names)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        # The file goes once it has been sent (or the client went away).
        cleanup = BackgroundTask(shutil.rmtree, tmp, ignore_errors=True)
        return FileResponse(tmp / filename, media_type=_MEDIA[fmt], filename=filename,
                            background=cleanup)  # fmt: skip

    # --- alarms and ingest ---------------------------------------------------------------

    def alarms(
        self, machine: str | None, active: bool | None, since: float | None, limit: int
    ) -> list[AlarmOut]:
        return [_alarm_out(a) for a in self.store.alarms(machine, active, since)[:limit]]

    def acknowledge(self, alarm_id: int, ack: AckIn, user: User) -> AlarmOut:
        # The record names who is logged in, never what the body claims.
        if ack.user is not None and ack.user.strip() != user.username:
            raise RequestValidationError([{
                "type": "value_error", "loc": ("body", "user"), "input": ack.user,
                "msg": f"user must be the logged-in user {user.username!r} (or left out)",
            }])  # fmt: skip
        try:
            stored = self.store.update_alarm(
                alarm_id, acknowledged_by=user.username, comment=ack.comment
            )
        except StoreError as exc:
            # The user is given, so the store refuses only an unknown id.
            raise HTTPException(404, str(exc)) from None
        return _alarm_out(stored)

    def ingest(self) -> IngestOut:
        snap = self.snapshot()
        c = snap.counters
        rejected = {str(k): int(v) for k, v in c.rejected.items()}
        return IngestOut(
            received=c.received, stored=c.stored, duplicates=c.duplicates, samples=c.samples,
            acks_sent=c.acks_sent, rejected=rejected, rejected_total=sum(rejected.values()),
            machines=len(snap.machines),
            machines_online=sum(s.online for s in snap.machines.values()),
        )  # fmt: skip

    def health(self) -> Health:
        self.snapshot()
        return Health(status="ok", machines=len(self.store.machines()))


# --- conversions ------------------------------------------------------------------------------

_MEDIA: dict[str, str] = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _execution(values: dict[str, float]) -> ExecutionName:
    value = values.get("execution")
    if value is None or not math.isfinite(value):
        return "UNKNOWN"
    try:
        return cast(ExecutionName, Execution(int(value)).name)
    except ValueError:  # a code this hub does not know: not a reason to fail the page
        return "UNKNOWN"


def _last_seen(state: LiveState | None) -> float | None:
    return state.last_seen if state is not None and state.last_seen > 0 else None


def _latency_ms(state: LiveState | None) -> float | None:
    latency = _finite(state.latency_s) if state is not None else None
    return None if latency is None else latency * 1000.0


def _summary(state: LiveState | None, active_alarms: int) -> LiveSummary:
    values = state.values if state is not None else {}
    line = _finite(values.get("line"))
    return LiveSummary(
        online=bool(state and state.online), execution=_execution(values),
        line=None if line is None else int(line), spindle_load=_finite(values.get("spindle.load")),
        active_alarms=active_alarms, last_seen=_last_seen(state), latency_ms=_latency_ms(state),
    )  # fmt: skip


def _live_out(state: LiveState, alarms: list[StoredAlarm]) -> MachineLiveOut:
    values = {k: v for k, v in state.values.items() if math.isfinite(v)}  # JSON has no NaN
    return MachineLiveOut(
        machine_id=state.machine, online=state.online, execution=_execution(values),
        values=values, alarms=[_alarm_out(a) for a in alarms], last_seen=_last_seen(state),
        latency_ms=_latency_ms(state), batches=state.batches, samples=state.samples,
    )  # fmt: skip


def _descriptor_out(d: MachineDescriptor | None) -> Descriptor | None:
    if d is None:
        return None
    return Descriptor(machine_id=d.machine_id, name=d.name, site=d.site, model=d.model,
                      signals=list(d.signals), axes=list(d.axes), extra=dict(d.extra))  # fmt: skip


def _alarm_out(a: StoredAlarm) -> AlarmOut:
    al = a.alarm
    return AlarmOut(
        id=a.id, machine=a.machine, code=str(al.code), severity=cast(SeverityName, al.severity.name),
        message=al.message, source=al.source, raised_at=al.raised_at, cleared_at=al.cleared_at,
        active=a.active, acknowledged_at=a.acknowledged_at, acknowledged_by=a.acknowledged_by,
        comment=a.comment,
    )  # fmt: skip


def _series_out(name: str, s: Series | None) -> SeriesOut:
    try:
        unit: str | None = signal_unit(name)
    except KeyError:
        unit = None  # a signal the machine declares beyond the canonical ones
    if s is None:
        return SeriesOut(signal=name, unit=unit, raw=True, t=[], min=[], max=[], mean=[], count=[])
    return SeriesOut(
        signal=name, unit=unit, raw=s.raw, t=s.t.tolist(), min=s.min.tolist(),
        max=s.max.tolist(), mean=s.mean.tolist(), count=s.count.tolist(),
    )  # fmt: skip


def _count_by_machine(alarms: Iterable[StoredAlarm]) -> dict[str, int]:
    return {m: len(a) for m, a in _group_by_machine(alarms).items()}


def _group_by_machine(alarms: Iterable[StoredAlarm]) -> dict[str, list[StoredAlarm]]:
    out: dict[str, list[StoredAlarm]] = {}
    for a in alarms:
        out.setdefault(a.machine, []).append(a)
    return out


def _split_names(values: list[str]) -> list[str]:
    """``?signals=a,b&signals=c`` → ``[a, b, c]``, blanks and repeats dropped."""
    names = (n.strip() for v in values for n in v.split(","))
    return list(dict.fromkeys(n for n in names if n))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "machine"


def _invalid(param: str, msg: str, value: object) -> NoReturn:
    """A 422 in the shape of FastAPI's own validation errors."""
    raise RequestValidationError(
        [{"type": "value_error", "loc": ("query", param), "msg": msg, "input": value}]
    )


def _check_range(t0: float, t1: float) -> None:
    # Finiteness and magnitude are checked by the Query declarations; here the relation.
    if not t1 > t0:
        _invalid("t1", f"t1 ({t1}) must be greater than t0 ({t0})", t1)
    if t1 - t0 < MIN_SPAN_S:
        _invalid("t1", f"the range t1 - t0 must be at least {MIN_SPAN_S} s", t1)


# --- the app ------------------------------------------------------------------------------------

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "Unknown machine"},
    503: {"model": Problem, "description": "The store or the live view failed"},
}
_TIME = {"allow_inf_nan": False, "ge": -MAX_ABS_TIME_S, "le": MAX_ABS_TIME_S}
MachineId = Annotated[str, PathParam(description="Machine id, as in its descriptor")]
Start = Annotated[float, Query(description="Start (inclusive), machine clock s", **_TIME)]
End = Annotated[float, Query(description="End (exclusive), machine clock s, > t0", **_TIME)]


def create_api(
    store: Store,
    live: LiveView,
    users: UserDirectory | None = None,
    *,
    login_limit: LoginLimit | None = None,
    commands: Any = None,
    machine_config: Callable[[str], Any] | None = None,
    maintenance: Any = None,
) -> FastAPI:
    """The hub's API over ``store``, ``live`` and ``users`` (see the module docstring).

    Without ``users`` the API fails closed: nobody can log in and every route under
    /api except login and logout answers 401. ``login_limit`` bounds login attempts
    per client address (default: 30 a minute). ``commands``: the hub's
    :class:`.commands.CommandService` (remote control; no control routes without
    one); ``machine_config``: each machine's description for pre-flight (default: the
    default machine); ``maintenance``: the hub's :class:`.maintenance.WorkOrderBook`
    (alarm guides and work orders; no maintenance routes without one)."""
    app = FastAPI(
        title="machinetwin hub",
        version="0.1.0",
        description="Machines, live state, samples, alarms and exports of the fleet. "
        "Log in with POST /api/login; every other /api route needs the session cookie or "
        "`Authorization: Bearer <token>`. A WebSocket at /api/ws/live pushes FleetLiveOut "
        "frames (OpenAPI cannot list it).",
    )
    app.state.users = users
    app.add_middleware(_AuthGate, users=users)
    hub = _Hub(store, live)
    _add_error_handlers(app)
    _add_auth_routes(app, users, login_limit or LoginLimit())
    _add_machine_routes(app, hub)
    _add_alarm_routes(app, hub)
    _add_feed_routes(app, hub)
    _add_control_routes(app, hub, commands, machine_config)
    _add_maintenance_routes(app, hub, maintenance)
    return app


def _add_maintenance_routes(app: FastAPI, hub: _Hub, book: Any) -> None:
    if book is None:
        return
    from .maintenance_api import add_maintenance_routes

    add_maintenance_routes(app, book, hub.store,
                           lambda m: hub.require_machine(m, hub.snapshot()), require_role)  # fmt: skip


def _add_control_routes(app: FastAPI, hub: _Hub, commands: Any,
                        machine_config: Callable[[str], Any] | None) -> None:  # fmt: skip
    """Remote control (hub/command_api.py), imported here: it pulls in the twin. A hub
    without a command service has no control routes at all."""
    if commands is None:
        return
    from ..machine import load_machine_config
    from .command_api import add_command_routes

    default = load_machine_config() if machine_config is None else None
    add_command_routes(app, commands, lambda m: hub.require_machine(m, hub.snapshot()),
                       machine_config or (lambda _m: default), require_role)  # fmt: skip


_LOGGED_IN = [Depends(require_role(Role.VIEWER))]  # documents the gate's rule in OpenAPI
_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Not logged in"},
    403: {"model": Problem, "description": "The user's role is too low"},
}


def _add_auth_routes(app: FastAPI, users: UserDirectory | None, limit: LoginLimit) -> None:
    @app.post("/api/login", response_model=SessionOut, tags=["auth"], responses={
        401: {"model": Problem, "description": "Wrong username or password"},
        429: {"model": Problem, "description": "Too many login attempts from this address"},
    })  # fmt: skip
    def login(credentials: LoginIn, request: Request, response: Response) -> SessionOut:
        """Check the password and start a session: the token is in the answer and in
        an HttpOnly, SameSite=Strict cookie. Unknown user, wrong password, disabled or
        locked-out user all get the same 401."""
        client = request.client.host if request.client else "unknown"
        wait = limit.retry_after(client)
        if wait:
            log.warning("api: login attempts from %s over the limit", client)
            raise HTTPException(429, f"too many login attempts from {client}: wait {wait:.0f} s",
                                headers={"Retry-After": str(math.ceil(wait))})  # fmt: skip
        user = users.authenticate(credentials.username, credentials.password) if users else None
        if users is None or user is None:
            log.warning("api: failed login as %r from %s", credentials.username[:64], client)
            raise _unauthorized("wrong username or password")
        log.info("api: %s logged in from %s", user.username, client)
        token = users.create_session(user, SESSION_TTL_S)
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https")  # fmt: skip
        return SessionOut(token=token, username=user.username, role=_role_name(user.role),
                          expires_in=SESSION_TTL_S)  # fmt: skip

    @app.post("/api/logout", status_code=204, response_class=Response, tags=["auth"])
    def logout(request: Request) -> Response:
        """End the session of the cookie or bearer token (nothing to do if there is
        none) and clear the cookie. API tokens are revoked by an admin, not here."""
        header = request.headers.get("authorization", "")
        for token in (request.cookies.get(SESSION_COOKIE), header.partition(" ")[2].strip()):
            if users is not None and token:
                users.end_session(token)
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @app.get("/api/me", response_model=MeOut, responses=_AUTH_ERRORS, tags=["auth"])
    def me(user: User = Depends(current_user)) -> MeOut:
        """Who is logged in, with which role."""
        return MeOut(username=user.username, role=_role_name(user.role))

    @app.get("/api/users", response_model=list[AccountOut], responses=_AUTH_ERRORS,
             tags=["auth"], dependencies=[Depends(require_role(Role.ADMIN))])  # fmt: skip
    def list_users() -> list[AccountOut]:
        """Every user with role, disabled flag, lockout and token names (admins only)."""
        assert users is not None  # the gate lets nobody in without a directory
        return [
            AccountOut(username=a.username, role=_role_name(a.role), disabled=a.disabled,
                       locked_until=a.locked_until, tokens=list(a.tokens))
            for a in users.accounts()
        ]  # fmt: skip


def _add_error_handlers(app: FastAPI) -> None:
    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    app.add_exception_handler(HubUnavailable, unavailable)
    # The user directory's file failed (a login, a token check outside /api).
    app.add_exception_handler(AuthError, unavailable)
    # Routes pass StoreError on only where input was validated: the store refused
    # something it should not have, which is its fault, not the client's.
    app.add_exception_handler(StoreError, unavailable)


def _add_machine_routes(app: FastAPI, hub: _Hub) -> None:
    @app.get("/api/machines", dependencies=_LOGGED_IN, response_model=list[MachineOut], responses={503: _ERRORS[503]},
             tags=["machines"])  # fmt: skip
    def list_machines() -> list[MachineOut]:
        """Every machine the hub knows, with a summary of its live state."""
        return hub.machines()

    @app.get("/api/machines/{machine_id}/live", dependencies=_LOGGED_IN, response_model=MachineLiveOut, responses=_ERRORS,
             tags=["machines"])  # fmt: skip
    def machine_live(machine_id: MachineId) -> MachineLiveOut:
        """Latest values of every signal, execution, active alarms, online, latency."""
        return hub.live(machine_id)

    @app.get("/api/machines/{machine_id}/samples", dependencies=_LOGGED_IN, response_model=SamplesOut, responses=_ERRORS,
             tags=["machines"])  # fmt: skip
    def machine_samples(
        machine_id: MachineId,
        t0: Start,
        t1: End,
        signals: list[str] | None = Query(
            None, description="Comma-separated signal names (or repeated); all with data if absent"
        ),
        buckets: int = Query(500, ge=1, le=MAX_BUCKETS, description="Buckets per signal"),
    ) -> SamplesOut:
        """Each signal as min/max/mean per bucket, or raw samples when it has fewer
        samples than buckets in the range."""
        return hub.samples(machine_id, signals, t0, t1, buckets)

    @app.get(
        "/api/machines/{machine_id}/export", response_class=FileResponse, tags=["machines"],
        dependencies=_LOGGED_IN,
        responses={**_ERRORS, 200: {"description": "Rows machine, signal, t, value ordered by signal, t",
                                    "content": {m: {"schema": {"type": "string", "format": "binary"}}
                                                for m in _MEDIA.values()}}},
    )  # fmt: skip
    def machine_export(
        machine_id: MachineId,
        t0: Start,
        t1: End,
        fmt: ExportFormat = Query("csv", alias="format"),
        signals: list[str] | None = Query(None, description="Comma-separated; all if absent"),
    ) -> FileResponse:
        """The raw samples of the range as a CSV or Parquet attachment."""
        return hub.export(machine_id, t0, t1, fmt, signals)


def _add_alarm_routes(app: FastAPI, hub: _Hub) -> None:
    @app.get("/api/alarms", dependencies=_LOGGED_IN, response_model=list[AlarmOut], responses={503: _ERRORS[503]},
             tags=["alarms"])  # fmt: skip
    def list_alarms(
        machine: str | None = Query(None, description="Only this machine's alarms"),
        active: bool | None = Query(None, description="true: not cleared; false: cleared"),
        since: float | None = Query(
            None, description="Raised at or after (machine clock s)", **_TIME
        ),
        limit: int = Query(1000, ge=1, le=100_000),
    ) -> list[AlarmOut]:
        """Alarms, newest first."""
        return hub.alarms(machine, active, since, limit)

    @app.post(
        "/api/alarms/{alarm_id}/ack", response_model=AlarmOut, tags=["alarms"],
        responses={404: {"model": Problem, "description": "Unknown alarm"}, 503: _ERRORS[503]},
    )  # fmt: skip
    def acknowledge_alarm(
        ack: AckIn,
        alarm_id: int = PathParam(ge=1, le=2**63 - 1),
        user: User = Depends(require_role(Role.VIEWER)),
    ) -> AlarmOut:
        """Acknowledge an alarm as the logged-in user (any role); acknowledging again
        records the newer user and comment."""
        return hub.acknowledge(alarm_id, ack, user)


def _add_feed_routes(app: FastAPI, hub: _Hub) -> None:
    @app.get("/api/ingest", dependencies=_LOGGED_IN, response_model=IngestOut, responses={503: _ERRORS[503]},
             tags=["hub"])  # fmt: skip
    def ingest_counters() -> IngestOut:
        """What ingest received, stored, found duplicate and rejected (by reason)."""
        return hub.ingest()

    @app.get("/healthz", response_model=Health, responses={503: _ERRORS[503]}, tags=["hub"])
    def healthz() -> Health:
        """200 when the store and the live view answer."""
        return hub.health()

    @app.websocket("/api/ws/live")
    async def live_feed(
        websocket: WebSocket,
        interval_ms: int = Query(DEFAULT_WS_INTERVAL_MS, ge=20, le=60_000),
    ) -> None:
        """Pushes a FleetLiveOut frame every ``interval_ms`` until the client leaves."""
        await _feed(websocket, hub, interval_ms / 1000.0)


async def _feed(ws: WebSocket, hub: _Hub, interval_s: float) -> None:
    await ws.accept()
    gone = asyncio.Event()
    watcher = asyncio.create_task(_watch_disconnect(ws, gone))
    try:
        while not gone.is_set():
            if not await _send(ws, await run_in_threadpool(_frame, hub)):
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gone.wait(), interval_s)
    finally:
        watcher.cancel()


async def _send(ws: WebSocket, frame: str) -> bool:
    try:
        await ws.send_text(frame)
    except (WebSocketDisconnect, RuntimeError):
        return False  # the client left between the check and the send: nothing to close
    return True


def _frame(hub: _Hub) -> str:
    try:
        return hub.fleet().model_dump_json()
    except HubUnavailable as exc:
        return FleetLiveOut(t=time.time(), machines=[], problem=str(exc)).model_dump_json()


async def _watch_disconnect(ws: WebSocket, gone: asyncio.Event) -> None:
    """Reads (and ignores) client messages so a close is noticed between frames."""
    try:
        while (await ws.receive())["type"] != "websocket.disconnect":
            pass
    except Exception:  # any receive failure means the connection is over
        pass
    finally:
        gone.set()
