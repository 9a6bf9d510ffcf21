"""The LinuxCNC adapter's mapping of status samples to canonical signals and events.

No LinuxCNC needed: sample lines as the helper writes them go through the adapter's
batching, against a per-sample reference written here, for any split into batches.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from machinetwin.model import Execution, MachineEvent, Mode, SampleBatch
from machinetwin.protocols.linuxcnc import LinuxCNCAdapter, LinuxCNCSettings
from machinetwin.protocols.linuxcnc.helper import SAMPLE_FIELDS

IDLE, READING, PAUSED, WAITING = 1, 2, 3, 4
MANUAL, AUTO, MDI = 1, 2, 3
ESTOP, ON = 1, 4

sample = st.fixed_dictionaries({
    "interp_state": st.sampled_from([IDLE, READING, PAUSED, WAITING]),
    "task_mode": st.sampled_from([MANUAL, AUTO, MDI]),
    "task_state": st.sampled_from([ESTOP, ON, ON, ON]),
    "paused": st.sampled_from([0, 0, 1]),
    "tool": st.integers(0, 4),
    "x.pos": st.floats(-1000, 1000), "x.pos_cmd": st.floats(-1000, 1000),
    "spindle_speed": st.floats(0, 24000), "spindle_enabled": st.sampled_from([0, 1]),
})  # fmt: skip


def line(t: float, s: dict[str, float]) -> bytes:
    values = {name: 0.0 for name in SAMPLE_FIELDS} | {"t": t} | s
    return " ".join(repr(float(values[n])) for n in SAMPLE_FIELDS).encode()


def reference_execution(samples: list[dict[str, float]], aborted: bool) -> list[Execution]:
    """One sample at a time: how the execution state reads to an operator."""
    out, busy_before, idle = [], False, Execution.READY
    for s in samples:
        busy = s["interp_state"] != IDLE
        if busy and not busy_before:
            aborted = False
        elif busy_before and not busy:
            idle = (Execution.STOPPED if aborted else Execution.PROGRAM_COMPLETED
                    if s["task_mode"] == AUTO else Execution.READY)  # fmt: skip
        busy_before = busy
        code = idle
        if busy:
            held = s["interp_state"] == PAUSED or s["paused"]
            code = Execution.INTERRUPTED if held else Execution.ACTIVE
        out.append(Execution.STOPPED if s["task_state"] == ESTOP else code)
    return out


@settings(max_examples=200, deadline=None)
@given(samples=st.lists(sample, min_size=1, max_size=40), cuts=st.lists(st.integers(1, 39)),
       aborted=st.booleans())  # fmt: skip
def test_any_batching_maps_like_the_per_sample_reference(
    samples: list[dict[str, float]], cuts: list[int], aborted: bool
) -> None:
    adapter = LinuxCNCAdapter(LinuxCNCSettings("m"))
    adapter.state.aborted = aborted
    rows = [line(1000.0 + 0.05 * i, s) for i, s in enumerate(samples)]
    bounds = sorted({0, len(rows), *(c for c in cuts if c < len(rows))})
    items: list[SampleBatch | MachineEvent] = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        items += adapter._flush(rows[a:b])
    batches = [i for i in items if isinstance(i, SampleBatch)]
    events = [i for i in items if isinstance(i, MachineEvent)]
    col = {k: np.concatenate([b.columns[k] for b in batches]) for k in batches[0].columns}
    want = reference_execution(samples, aborted)
    assert col["execution"].tolist() == [float(e) for e in want]
    # an execution event exactly where the state changes, the first one included
    changes = [e.name for k, e in enumerate(want) if k == 0 or e != want[k - 1]]
    assert [e.value for e in events if e.kind == "execution"] == changes
    x, x_cmd = (np.array([s[k] for s in samples]) for k in ("x.pos", "x.pos_cmd"))
    assert np.array_equal(col["x.ferr"], x_cmd - x)
    modes = {MANUAL: Mode.MANUAL, AUTO: Mode.AUTOMATIC, MDI: Mode.MDI}
    assert col["mode"].tolist() == [float(modes[s["task_mode"]]) for s in samples]
    speed = [s["spindle_speed"] if s["spindle_enabled"] else 0.0 for s in samples]
    assert col["spindle.speed"].tolist() == speed
    # e-stop alarms: raised when it is pressed, cleared when released, alternating
    estop = [s["task_state"] == ESTOP for s in samples]
    kinds = [e.kind for e in events if e.kind in ("alarm", "alarm_cleared")]
    presses = sum(1 for k, v in enumerate(estop) if v and (k == 0 or not estop[k - 1]))
    assert kinds.count("alarm") == presses
    assert kinds == ["alarm", "alarm_cleared"] * (len(kinds) // 2) + ["alarm"] * (len(kinds) % 2)
    tools = [e.value for e in events if e.kind == "tool"]
    assert tools == [s["tool"] for k, s in enumerate(samples)
                     if k == 0 or s["tool"] != samples[k - 1]["tool"]]  # fmt: skip
    t = np.concatenate([b.t for b in batches])
    assert np.all(np.diff(t) > 0) and all(e.t >= t[0] for e in events)


def test_nml_keys_and_instance_processes(tmp_path) -> None:
    """What a stopped instance left is found by the NML file's keys and by its own
    RTAPI_FIFO_PATH in the daemons' environment (no LinuxCNC needed: files shaped so)."""
    from machinetwin.protocols.linuxcnc.sim import (
        DEFAULT_NML_KEYS,
        instance_pids,
        linuxcnc_running,
        nml_keys,
    )

    nml = tmp_path / "x.nml"
    nml.write_text("# c\nB emcCommand SHMEM localhost 8192 0 0 1 16 1001 TCP=5005 xdr\n"
                   "B emcStatus SHMEM localhost 20480 0 0 2 16 1002 TCP=5005 xdr\n"
                   "B other LOCMEM localhost 1 0 0 2 16 77\nP emc emcCommand LOCAL\n")  # fmt: skip
    assert nml_keys(nml) == (1001, 1002)
    assert nml_keys(tmp_path / "missing.nml") == DEFAULT_NML_KEYS
    proc = tmp_path / "proc"
    for pid, comm, env in ((10, "rtapi_app", b"A=1\0RTAPI_FIFO_PATH=/w1/fifo\0"),
                           (11, "milltask", b"RTAPI_FIFO_PATH=/w1/fifo/x\0"),
                           (12, "python3", b"RTAPI_FIFO_PATH=/w1/fifo\0"),
                           (13, "io", b"RTAPI_FIFO_PATH=/w2/fifo")):  # fmt: skip
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "stat").write_text(f"{pid} ({comm}) S 1 {pid} {pid} 0 -1\n")
        (proc / str(pid) / "environ").write_bytes(env)
    # only LinuxCNC's own processes, only this instance's exact path
    assert instance_pids(b"RTAPI_FIFO_PATH=/w1/fifo", proc) == [10]
    assert instance_pids(b"RTAPI_FIFO_PATH=/w2/fifo", proc) == [13]
    assert linuxcnc_running(proc)
    # a zombie (not reaped by PID 1 in a container) is no running instance
    for pid in (10, 11, 13):
        stat = proc / str(pid) / "stat"
        stat.write_text(stat.read_text().replace(") S ", ") Z "))
    assert instance_pids(b"RTAPI_FIFO_PATH=/w1/fifo", proc) == []
    assert not linuxcnc_running(proc)
