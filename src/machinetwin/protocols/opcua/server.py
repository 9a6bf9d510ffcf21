"""An OPC UA server that shows machinetwin's machines (any ``Adapter``) as umati MachineTools.

Each machine is a ``MachineToolType`` instance under ``Objects/Machines`` (OPC 40501-1
v1.01): Identification, Monitoring (Channel1 state and mode, overrides, Spindle,
Stacklight), Production/ActiveProgram, Equipment/Tools (tool life), Notification/Messages
(``AlertType`` events with ErrorCode), and machinetwin's Telemetry. The types are built
in code with the specification's BrowseNames and namespace URIs (no nodeset file).

Every sample batch becomes ONE write service call covering all of the machine's
variables (the newest value of each column, stamped with its sample time): OPC UA
variables show a state, and subscribers sample it at their own interval.

Security: policies None, Basic256Sha256 Sign and SignAndEncrypt (a certificate and key
are needed for the latter two), anonymous, user/password and X509 user identities, and
optionally a list of trusted client application certificates.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import Node, Server, ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.internal_server import InternalServer

from ...model import Adapter, Alarm, Execution, MachineEvent, SampleBatch
from . import model as m

log = logging.getLogger(__name__)

Write = tuple[ua.NodeId, ua.DataValue]  # one value for the address space

POLICIES = {
    "None": ua.SecurityPolicyType.NoSecurity,
    "Basic256Sha256_Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "Basic256Sha256_SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
}


@dataclass
class ServerSecurity:
    """Who may connect and how. ``users``: user name -> password; ``trusted``: client
    certificates (PEM or DER files) accepted as application and as user identities (none
    listed: any client application certificate is accepted, none as a user)."""

    policies: tuple[str, ...] = ("None",)  # add the Basic256Sha256 ones with a certificate
    certificate: Path | None = None
    private_key: Path | None = None
    users: dict[str, str] = field(default_factory=dict)
    trusted: list[Path] = field(default_factory=list)
    allow_anonymous: bool = True

    def check(self) -> None:
        unknown = [p for p in self.policies if p not in POLICIES]
        if unknown:
            raise ValueError(
                f"OPC UA security: unknown policies {unknown} (known: {list(POLICIES)})"
            )
        secure = [p for p in self.policies if p != "None"]
        if secure and (self.certificate is None or self.private_key is None):
            raise ValueError(f"OPC UA security: policies {secure} need certificate and private_key")
        if not self.allow_anonymous and not self.users and not self.trusted:
            raise ValueError("OPC UA security: no anonymous access, no users and no trusted "
                             "certificates: nobody could connect")  # fmt: skip


def _fingerprint(cert: Any) -> bytes:
    """SHA-256 of a certificate in DER (cryptography object or DER bytes)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    if isinstance(cert, bytes | bytearray):
        cert = x509.load_der_x509_certificate(bytes(cert))
    return cert.fingerprint(hashes.SHA256())


def _load_cert(path: Path) -> Any:
    from cryptography import x509

    data = Path(path).read_bytes()
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


class _Users:
    """asyncua user manager: user/password, trusted X509 users, anonymous if allowed."""

    def __init__(self, security: ServerSecurity) -> None:
        self.security = security
        self.trusted = {_fingerprint(_load_cert(p)) for p in security.trusted}

    def get_user(self, iserver: InternalServer, username: str | None = None,
                 password: str | None = None, certificate: Any = None) -> User | None:  # fmt: skip
        if username is not None:
            expected = self.security.users.get(username)
            ok = expected is not None and hmac.compare_digest(expected, password or "")
            return User(role=UserRole.User, name=username) if ok else None
        if certificate:  # anonymous sessions pass empty bytes
            try:
                known = _fingerprint(certificate) in self.trusted
            except ValueError:  # not a certificate at all
                return None
            return User(role=UserRole.User, name="x509") if known else None
        return User(role=UserRole.User) if self.security.allow_anonymous else None


@dataclass
class MachineNodes:
    """The variables of one machine and what it last showed."""

    machine_id: str
    root: Node
    signals: dict[str, tuple[ua.NodeId, ua.VariantType, float]]
    channel_state: ua.NodeId
    program_name: ua.NodeId
    program_state: ua.NodeId
    is_rotating: ua.NodeId
    lamps: list[ua.NodeId]
    tool_life: dict[int, ua.NodeId]
    messages: Node
    alerts: Any = None  # the EventGenerator of its AlertType events
    execution: Execution | None = None
    active: dict[tuple[str, str], Alarm] = field(default_factory=dict)


class MachineToolServer:
    """Serves adapters' machines over OPC UA; ``async with server.serving() as url``."""

    def __init__(self, adapters: Iterable[Adapter],
                 endpoint: str = "opc.tcp://127.0.0.1:4840/machinetwin",
                 security: ServerSecurity | None = None, name: str = "machinetwin") -> None:  # fmt: skip
        self.adapters = list(adapters)
        ids = [a.descriptor.machine_id for a in self.adapters]
        if len(set(ids)) != len(ids):
            raise ValueError(f"OPC UA server: machine ids must be unique, got {ids}")
        self.endpoint = endpoint
        self.security = security or ServerSecurity()
        self.security.check()
        self.name = name
        self.server = Server()
        self.machines: dict[str, MachineNodes] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.ns: dict[str, int] = {}
        self.writes = 0  # write service calls made (one per batch)
        self.conditions: dict[ua.NodeId, Any] = {}  # ConditionId -> its last event

    # ------------------------------------------------------------ setup

    async def _init_server(self) -> None:
        s = self.server
        # ConditionRefresh(2) answered from the retained conditions (our active alarms);
        # the value is the Severity of the RefreshStart/End events
        s.iserver.bind_condition_methods = 1
        await s.init()
        s.iserver.isession.add_method_callback(
            ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge), self._acknowledge)  # fmt: skip
        s.set_endpoint(self.endpoint)
        s.set_server_name(self.name)
        await s.set_application_uri(f"urn:machinetwin:{self.name}")
        sec = self.security
        s.set_security_policy([POLICIES[p] for p in sec.policies])
        if sec.certificate is not None and sec.private_key is not None:
            await s.load_certificate(str(sec.certificate))
            await s.load_private_key(str(sec.private_key))
        tokens: list[type] = [ua.UserNameIdentityToken, ua.X509IdentityToken]
        if sec.allow_anonymous:
            tokens.insert(0, ua.AnonymousIdentityToken)
        s.set_identity_tokens(tokens)
        s.iserver.set_user_manager(_Users(sec))
        if sec.trusted:
            trusted = {_fingerprint(_load_cert(p)) for p in sec.trusted}

            async def validate(cert: Any, app: ua.ApplicationDescription) -> None:
                if _fingerprint(cert) not in trusted:
                    raise ua.uaerrors.BadCertificateUntrusted()

            s.set_certificate_validator(validate)  # type: ignore[arg-type]
        for key, uri in m.NAMESPACES.items():
            self.ns[key] = await s.register_namespace(uri)
        self.ns[m.UA] = 0

    async def _build_types(self) -> None:
        """The ObjectTypes, VariableType, enumerations and event type of the model, with
        the specification's names (their instance declarations are built per instance)."""
        s, ns = self.server, self.ns
        base = s.get_node(ua.ObjectIds.BaseObjectType)
        self.types: dict[str, ua.NodeId] = {}

        async def obj_type(parent: Node, key: str, name: str) -> Node:
            node = await parent.add_object_type(ua.NodeId(name, ns[key]),
                                                ua.QualifiedName(name, ns[key]))  # fmt: skip
            self.types[name] = node.nodeid
            return node

        for name in ("MachineToolType", "MachineToolIdentificationType", "MonitoringType",
                     "MachineOperationMonitoringType", "ProductionType", "EquipmentType",
                     "ToolListType", "NotificationType"):  # fmt: skip
            await obj_type(base, m.MT, name)
        element = await obj_type(base, m.MT, "ElementMonitoringType")
        await obj_type(element, m.MT, "ChannelMonitoringType")
        working = await obj_type(element, m.MT, "WorkingUnitMonitoringType")
        await obj_type(working, m.MT, "SpindleMonitoringType")
        program = await obj_type(base, m.MT, "ProductionProgramType")
        await obj_type(program, m.MT, "ProductionActiveProgramType")
        fsm = s.get_node(ua.ObjectIds.FiniteStateMachineType)
        await obj_type(fsm, m.MT, "ProductionProgramStateMachineType")
        base_tool = await obj_type(base, m.MT, "BaseToolType")
        await obj_type(base_tool, m.MT, "ToolType")
        await obj_type(base, m.IA, "BasicStacklightType")
        await obj_type(base, m.IA, "StackElementLightType")
        var_base = s.get_node(ua.ObjectIds.BaseDataVariableType)
        life = await var_base.add_variable_type(ua.NodeId("ToolLifeType", ns[m.MT]),
                                                ua.QualifiedName("ToolLifeType", ns[m.MT]),
                                                ua.ObjectIds.Number)  # fmt: skip
        self.types["ToolLifeType"] = life.nodeid
        self.alert_type = await s.create_custom_event_type(
            ns[m.MT], "AlertType", ua.ObjectIds.AlarmConditionType, [("ErrorCode", ua.VariantType.String)])  # fmt: skip
        self.enums = {name: await self._enum(name, fields) for name, fields in m.ENUMS.items()}
        await self._declare()

    async def _enum(self, name: str, fields: tuple[str, ...]) -> ua.NodeId:
        """An enumeration DataType of the MachineTool namespace, with its definition and
        the EnumValues property generic clients read names from."""
        from asyncua.common.structures104 import new_enum

        node = await new_enum(self.server, ua.NodeId(name, self.ns[m.MT]),
                              ua.QualifiedName(name, self.ns[m.MT]), list(fields))  # fmt: skip
        values = [ua.EnumValueType(Value=k, DisplayName=ua.LocalizedText(f),
                                   Description=ua.LocalizedText(f)) for k, f in enumerate(fields)]  # fmt: skip
        await node.add_property(0, "EnumValues", ua.Variant(values, ua.VariantType.ExtensionObject),
                                datatype=ua.NodeId(ua.ObjectIds.EnumValueType))  # fmt: skip
        return node.nodeid

    async def _declare(self) -> None:
        """The types' instance declarations (m.DECLARATIONS), bottom-up so that a declared
        component carries its own type's declarations: a client browsing a type sees what
        every instance has (ModellingRule Mandatory) or may have (Optional)."""
        ns, s = self.ns, self.server
        for type_name, key, name, kind, of, mandatory in m.DECLARATIONS:
            parent = s.get_node(self.types[type_name])
            nodeid = ua.NodeId(f"{type_name}/{name}", ns[key])
            qname = ua.QualifiedName(name, ns[key])
            if kind == "object":
                otype = self.types.get(of, ua.NodeId(ua.ObjectIds.BaseObjectType))
                node = await parent.add_object(nodeid, qname, otype, instantiate_optional=False)
            else:
                vtype = (
                    ua.VariantType[of] if of in ua.VariantType.__members__ else ua.VariantType.Int32
                )
                add = parent.add_property if kind == "property" else parent.add_variable
                node = await add(nodeid, qname, ua.Variant(ua.get_default_value(vtype), vtype),
                                 datatype=self.enums.get(of))  # fmt: skip
            await node.set_modelling_rule(mandatory)
            await _rule_copies(node)

    async def _build_machine(self, adapter: Adapter, machines: Node) -> MachineNodes:
        d = adapter.descriptor
        ns, mid = self.ns, d.machine_id
        made: dict[tuple[tuple[str, str], ...], Node] = {}

        def nid(path: tuple[tuple[str, str], ...]) -> ua.NodeId:
            return ua.NodeId("/".join([mid, *(n for _, n in path)]), ns[m.TWIN])

        # what instantiating a type already made (its mandatory declarations), by path
        present: dict[m.Path, Node] = {}

        async def typed(path: m.Path, node: Node) -> Node:
            made[path] = node
            for ref in await node.get_children_descriptions():
                key = next((k for k, v in ns.items() if v == ref.BrowseName.NamespaceIndex), "")
                present[(*path, (key, ref.BrowseName.Name))] = self.server.get_node(ref.NodeId)
            return node

        async def obj(path: m.Path, type_name: str | None = None,
                      type_id: int = ua.ObjectIds.BaseObjectType) -> Node:  # fmt: skip
            if path in present:
                return await typed(path, present[path])
            parent = made[path[:-1]]
            key, name = path[-1]
            otype = self.types[type_name] if type_name else ua.NodeId(type_id)
            node = await parent.add_object(nid(path), ua.QualifiedName(name, ns[key]), otype,
                                           instantiate_optional=False)  # fmt: skip
            return await typed(path, node)

        async def var(path: m.Path, value: Any, vtype: ua.VariantType, prop: bool = False,
                      datatype: ua.NodeId | None = None) -> ua.NodeId:  # fmt: skip
            if path in present:  # declared by the type: give it the instance's value
                node = present[path]
                await node.write_value(ua.Variant(value, vtype))
            else:
                parent = made[path[:-1]]
                key, name = path[-1]
                add = parent.add_property if prop else parent.add_variable
                node = await add(nid(path), ua.QualifiedName(name, ns[key]),
                                 ua.Variant(value, vtype), datatype=datatype)  # fmt: skip
            made[path] = node  # a variable may have properties of its own
            return node.nodeid

        root = await machines.add_object(ua.NodeId(mid, ns[m.TWIN]),
                                         ua.QualifiedName(mid, ns[m.TWIN]),
                                         self.types["MachineToolType"],
                                         instantiate_optional=False)  # fmt: skip
        await typed((), root)
        await self._identification(adapter, obj, var)
        mon = ("mt", "Monitoring")
        await obj((mon,), "MonitoringType")
        await obj((mon, ("mt", "MachineTool")), "MachineOperationMonitoringType")
        await var((mon, ("mt", "MachineTool"), ("mt", "PowerOnDuration")), 0, ua.VariantType.UInt32)
        channel = (mon, ("mt", m.CHANNEL))
        await obj(channel, "ChannelMonitoringType")
        await var((*channel, ("mt", "Name")), m.CHANNEL, ua.VariantType.String, prop=True)
        spindle = (mon, ("mt", m.SPINDLE))
        await obj(spindle, "SpindleMonitoringType")
        await var((*spindle, ("mt", "Name")), "S1", ua.VariantType.String, prop=True)
        lamps = await self._stacklight(mon, obj, var)
        state, program_state = m.execution_to_opcua(Execution.READY)
        signals: dict[str, tuple[ua.NodeId, ua.VariantType, float]] = {}
        for mp in m.SIGNAL_MAP:
            for k in range(1, len(mp.path)):
                if mp.path[:k] not in made:
                    await obj(mp.path[:k], None, ua.ObjectIds.FolderType)
            vtype = ua.VariantType[mp.vtype]
            datatype = self.enums.get(mp.datatype) if mp.datatype else None
            signals[mp.signal] = (await var(mp.path, ua.get_default_value(vtype), vtype,
                                            datatype=datatype), vtype, mp.scale)  # fmt: skip
        await self._write([_initial(name, *signals[name]) for name in signals])
        channel_state = await var(m.CHANNEL_STATE, state, ua.VariantType.Int32,
                                  datatype=self.enums["ChannelState"])  # fmt: skip
        is_rotating = await var(m.IS_ROTATING, False, ua.VariantType.Boolean)
        prod = (("mt", "Production"),)
        await obj(prod, "ProductionType")
        await obj((*prod, ("mt", "ActiveProgram")), "ProductionActiveProgramType")
        program_name = await var(m.PROGRAM_NAME, "", ua.VariantType.String, prop=True)
        await var((*prod, ("mt", "ActiveProgram"), ("ua", "NumberInList")), 0,
                  ua.VariantType.UInt16, prop=True)  # fmt: skip
        # the state machine type brings its CurrentState (from FiniteStateMachineType)
        state_machine = await obj(m.PROGRAM_STATE[:-1], "ProductionProgramStateMachineType")
        current = await state_machine.get_child(ua.QualifiedName("CurrentState", 0))
        program_state_id = current.nodeid
        now = datetime.now(UTC)
        await self._write([_write(program_state_id, ua.LocalizedText(program_state),
                                  ua.VariantType.LocalizedText, now, now)])  # fmt: skip
        tool_life = await self._tools(adapter, obj, var)
        await obj(m.MESSAGES[:1], "NotificationType")
        messages = await obj(m.MESSAGES)
        await messages.write_attribute(ua.AttributeIds.EventNotifier, ua.DataValue(
            ua.Variant(ua.EventNotifier.SubscribeToEvents, ua.VariantType.Byte)))  # fmt: skip
        nodes = MachineNodes(mid, root, signals, channel_state, program_name, program_state_id,
                             is_rotating, lamps, tool_life, messages)  # fmt: skip
        nodes.alerts = await self.server.get_event_generator(self.alert_type, messages)
        return nodes

    async def _identification(self, adapter: Adapter, obj: Any, var: Any) -> None:
        d = adapter.descriptor
        ident = (("di", "Identification"),)
        await obj(ident, "MachineToolIdentificationType")
        text = ua.VariantType.LocalizedText
        for name, value, vtype in (
            ("Manufacturer", ua.LocalizedText("machinetwin"), text),
            ("Model", ua.LocalizedText(d.model or "virtual machine"), text),
            ("ComponentName", ua.LocalizedText(d.name), text),
            ("SerialNumber", d.machine_id, ua.VariantType.String),
            ("ProductInstanceUri", f"urn:machinetwin:{d.machine_id}", ua.VariantType.String),
        ):
            await var((*ident, ("di", name)), value, vtype, prop=True)
        await var((*ident, ("mt", "Location")), d.site, ua.VariantType.String, prop=True)

    async def _stacklight(self, mon: tuple[str, str], obj: Any, var: Any) -> list[ua.NodeId]:
        light = (mon, ("mt", "Stacklight"))
        await obj(light, "BasicStacklightType")
        await var((*light, ("ia", "StacklightMode")), m.STACKLIGHT_SEGMENTED, ua.VariantType.Int32)
        lamps = []
        for k, (color, value) in enumerate(m.STACK_COLORS):
            lamp = (*light, ("ia", f"{color}Light"))
            await obj(lamp, "StackElementLightType")
            await var((*lamp, ("ua", "NumberInList")), k, ua.VariantType.UInt16, prop=True)
            await var((*lamp, ("ia", "SignalColor")), value, ua.VariantType.Int32)
            lamps.append(await var((*lamp, ("ia", "SignalOn")), False, ua.VariantType.Boolean))
        return lamps

    async def _tools(self, adapter: Adapter, obj: Any, var: Any) -> dict[int, ua.NodeId]:
        """Equipment/Tools: the machine's tool table (virtual machines know theirs), each
        with ToolLife/FlankWear (VB in mm, counting up to the 0.3 mm change limit)."""
        await obj(m.TOOLS[:1], "EquipmentType")
        await obj(m.TOOLS, "ToolListType")
        config = getattr(adapter, "config", None)
        out: dict[int, ua.NodeId] = {}
        for tool in getattr(config, "tools", []) or []:
            t = (*m.TOOLS, ("mt", f"T{tool.number}"))
            await obj(t, "ToolType")
            await var((*t, ("mt", "ControlIdentifier1")), tool.number, ua.VariantType.UInt32)
            await var((*t, ("mt", "ControlIdentifierInterpretation")), 0, ua.VariantType.Int32)
            await var((*t, ("mt", "Name")), tool.description or f"T{tool.number}",
                      ua.VariantType.String, prop=True)  # fmt: skip
            await obj((*t, ("mt", "ToolLife")))
            entry = (*t, ("mt", "ToolLife"), ("mt", m.TOOL_LIFE_ENTRY))
            out[tool.number] = await var(entry, 0.0, ua.VariantType.Double)
            await var((*entry, ("mt", "IsCountingUp")), True, ua.VariantType.Boolean, prop=True)
            await var((*entry, ("mt", "LimitValue")), 0.3, ua.VariantType.Double, prop=True)
        return out

    # ------------------------------------------------------------ data in

    async def write_batch(self, nodes: MachineNodes, batch: SampleBatch) -> None:
        """The newest value of every column, plus what derives from them, in one write."""
        if len(batch) == 0:
            return
        stamp = datetime.fromtimestamp(float(batch.t[-1]), UTC)
        now = datetime.now(UTC)
        values = m.last_values(batch.columns, list(nodes.signals))
        writes = [_write(nodes.signals[s][0], v * nodes.signals[s][2], nodes.signals[s][1], stamp,
                         now) for s, v in values.items()]  # fmt: skip
        if "spindle.speed" in values:
            writes.append(_write(nodes.is_rotating, abs(values["spindle.speed"]) > 1.0,
                                 ua.VariantType.Boolean, stamp, now))  # fmt: skip
        wear, tool = values.get("tool_wear"), values.get("tool")
        if wear is not None and tool is not None and int(tool) in nodes.tool_life:
            writes.append(_write(nodes.tool_life[int(tool)], wear, ua.VariantType.Double, stamp,
                                 now))  # fmt: skip
        col = batch.columns.get("execution")
        if col is not None and len(col) and col[-1] == col[-1]:
            writes += self._execution_writes(nodes, Execution(int(col[-1])), stamp, now)
        await self._write(writes)

    def _execution_writes(self, nodes: MachineNodes, execution: Execution, stamp: datetime,
                          now: datetime) -> list[Write]:  # fmt: skip
        if execution == nodes.execution:
            return []
        nodes.execution = execution
        state, program = m.execution_to_opcua(execution)
        return [
            _write(nodes.channel_state, state, ua.VariantType.Int32, stamp, now),
            _write(
                nodes.program_state,
                ua.LocalizedText(program),
                ua.VariantType.LocalizedText,
                stamp,
                now,
            ),  # fmt: skip
            *self._lamp_writes(nodes, stamp, now),
        ]

    def _lamp_writes(self, nodes: MachineNodes, stamp: datetime,
                     now: datetime) -> list[Write]:  # fmt: skip
        lamps = m.stacklight(nodes.execution, bool(nodes.active))
        return [_write(n, on, ua.VariantType.Boolean, stamp, now)
                for n, on in zip(nodes.lamps, lamps, strict=True)]  # fmt: skip

    async def _write(self, writes: list[Write]) -> None:
        """Values into the address space, straight to it: the Write service's loop adds a
        dataclasses.replace per value for the server timestamp we already set."""
        if not writes:
            return
        self.writes += 1
        aspace = self.server.iserver.aspace
        value = ua.AttributeIds.Value
        bad = [status for node, dv in writes
               if not (status := await aspace.write_attribute_value(node, value, dv)).is_good()]  # fmt: skip
        if bad:
            log.warning("OPC UA write: %d of %d values refused (%s)", len(bad), len(writes), bad[0])

    async def handle_event(self, nodes: MachineNodes, event: MachineEvent) -> None:
        stamp = datetime.fromtimestamp(event.t, UTC)
        now = datetime.now(UTC)
        if event.kind == "execution" and event.value in Execution.__members__:
            await self._write(self._execution_writes(nodes, Execution[event.value], stamp, now))
        elif event.kind == "program":
            name = event.value.get("name") if isinstance(event.value, dict) else event.value
            await self._write([_write(nodes.program_name, str(name or ""), ua.VariantType.String,
                                      stamp, now)])  # fmt: skip
        elif event.kind in ("alarm", "alarm_cleared") and event.alarm is not None:
            await self._alert(nodes, event.alarm, event.kind == "alarm_cleared")

    async def _alert(self, nodes: MachineNodes, alarm: Alarm, cleared: bool) -> None:
        """An AlertType condition event: raised (ActiveState True, Retain) or cleared
        (False, not retained). Each alarm (code, source) is one condition with its own
        ConditionId, so the server keeps the active ones for ConditionRefresh: a client
        that subscribes late, or again after a restart, still learns what is active."""
        key = (str(alarm.code), alarm.source)
        active = not cleared and alarm.cleared_at is None
        if active:
            nodes.active[key] = alarm
        elif nodes.active.pop(key, None) is None:
            return  # clearing what was never raised here
        # a copy per trigger: the server keeps retained events as they were sent
        ev = copy.copy(nodes.alerts.event)
        ev.NodeId = await self._condition_node(nodes, key)
        ev.ErrorCode = str(alarm.code)
        ev.Message = ua.LocalizedText(alarm.message)
        ev.Severity = m.severity_to_opcua(alarm.severity)
        ev.SourceName = alarm.source
        ev.SourceNode = nodes.root.nodeid
        ev.ConditionName = f"{alarm.code}:{alarm.source}"
        for state, on, text in (("ActiveState", active, ("Active", "Inactive")),
                                ("EnabledState", True, ("Enabled", "Disabled")),
                                ("AckedState", False, ("Acknowledged", "Unacknowledged"))):  # fmt: skip
            setattr(ev, state, ua.LocalizedText(text[0] if on else text[1]))
            setattr(ev, f"{state}/Id", on)
        ev.Retain = active
        t = alarm.raised_at if active else (alarm.cleared_at or time.time())
        await self._send_condition(ev, datetime.fromtimestamp(t, UTC))
        await self._write(self._lamp_writes(nodes, datetime.now(UTC), datetime.now(UTC)))

    async def _send_condition(self, ev: Any, stamp: datetime) -> None:
        ev.EventId = ua.Variant(uuid.uuid4().bytes, ua.VariantType.ByteString)
        ev.Time, ev.ReceiveTime = stamp, datetime.now(UTC)
        self.conditions[ev.NodeId] = ev  # what Acknowledge refers to by EventId
        await self.server.iserver.isession.subscription_service.trigger_event(ev)

    async def _condition_node(self, nodes: MachineNodes, key: tuple[str, str]) -> ua.NodeId:
        """The condition object of an alarm (code, source) below Notification/Messages,
        made on its first occurrence: the ConditionId its events carry and the object
        Acknowledge is called on."""
        nodeid = ua.NodeId(f"{nodes.machine_id}/Notification/Messages/{key[0]}:{key[1]}",
                           self.ns[m.TWIN])  # fmt: skip
        if nodeid not in self.conditions:
            await nodes.messages.add_object(nodeid, ua.QualifiedName(f"{key[0]}:{key[1]}",
                                                                     self.ns[m.TWIN]))  # fmt: skip
        return nodeid

    async def _acknowledge(self, condition: ua.NodeId, event_id: Any,
                           comment: Any = None) -> ua.StatusCode:  # fmt: skip
        """AcknowledgeableConditionType.Acknowledge on one of our conditions: the operator
        saw it. It stays active (and retained) until the machine clears it."""
        ev = self.conditions.get(condition)
        if ev is None:
            return ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown)
        given = event_id.Value if isinstance(event_id, ua.Variant) else event_id
        if given != ev.EventId.Value:
            return ua.StatusCode(ua.StatusCodes.BadEventIdUnknown)
        if getattr(ev, "AckedState/Id", False):
            return ua.StatusCode(ua.StatusCodes.BadConditionBranchAlreadyAcked)
        acked = copy.copy(ev)
        acked.AckedState = ua.LocalizedText("Acknowledged")
        setattr(acked, "AckedState/Id", True)
        text = comment.Value if isinstance(comment, ua.Variant) else comment
        acked.Comment = (
            text if isinstance(text, ua.LocalizedText) else ua.LocalizedText(str(text or ""))
        )
        await self._send_condition(acked, datetime.now(UTC))
        return ua.StatusCode()

    async def feed_from(self, adapter: Adapter, nodes: MachineNodes) -> None:
        try:
            async for item in adapter.batches():
                if isinstance(item, SampleBatch):
                    await self.write_batch(nodes, item)
                else:
                    await self.handle_event(nodes, item)
        except Exception:
            log.exception("%s: adapter failed", nodes.machine_id)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self._init_server()
        await self._build_types()
        objects = self.server.nodes.objects
        machines = await objects.add_folder(
            ua.NodeId("Machines", self.ns[m.MACHINERY]),
            ua.QualifiedName("Machines", self.ns[m.MACHINERY]))  # fmt: skip
        for adapter in self.adapters:
            self.machines[adapter.descriptor.machine_id] = await self._build_machine(adapter,
                                                                                     machines)  # fmt: skip
        await self.server.start()
        for adapter in self.adapters:
            nodes = self.machines[adapter.descriptor.machine_id]
            self.tasks.append(asyncio.create_task(self.feed_from(adapter, nodes)))

    async def stop(self) -> None:
        for adapter in self.adapters:
            await adapter.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.stop()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        """Run the server and its adapters; yields the endpoint URL."""
        await self.start()
        try:
            yield self.endpoint
        finally:
            await self.stop()


def _write(node: ua.NodeId, value: Any, vtype: ua.VariantType, stamp: datetime,
           now: datetime) -> Write:  # fmt: skip
    if vtype in (ua.VariantType.Int32, ua.VariantType.UInt32, ua.VariantType.UInt16):
        value = int(value)
    elif vtype == ua.VariantType.Boolean:
        value = bool(value)
    return node, ua.DataValue(ua.Variant(value, vtype), SourceTimestamp=stamp, ServerTimestamp=now)


# the specification's mandatory variables a machine may never report (the virtual machine
# does not report its mode or overrides): shown as the neutral value, marked uncertain
_NEUTRAL = {"mode": 0.0, "feed_override": 100.0, "rapid_override": 100.0,
            "spindle_override": 100.0}  # fmt: skip


def _initial(signal: str, node: ua.NodeId, vtype: ua.VariantType, scale: float) -> Write:
    """No value until the machine gives one (a client must not take a default for data);
    mandatory ones hold their neutral value with status Uncertain_InitialValue."""
    if signal in _NEUTRAL:
        value = _NEUTRAL[signal] * scale
        value = int(value) if vtype == ua.VariantType.Int32 else value
        dv = ua.DataValue(ua.Variant(value, vtype),
                          StatusCode=ua.StatusCode(ua.StatusCodes.UncertainInitialValue))  # fmt: skip
    else:
        dv = ua.DataValue(StatusCode=ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData))
    return node, dv


async def _rule_copies(declaration: Node) -> None:
    """The children asyncua copied into a declaration from its type (that type's own
    mandatory members) get ModellingRule Mandatory too: without one, instantiating an
    instance skips them (a State without its CurrentState)."""
    for child in await declaration.get_children():
        if not await child.get_referenced_nodes(refs=ua.ObjectIds.HasModellingRule):
            await child.set_modelling_rule(True)
        await _rule_copies(child)
