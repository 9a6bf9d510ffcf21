"""Transport security against a real Mosquitto (issue 6): TLS with a test-made CA,
per-edge passwords in Mosquitto's own hashed format, and ACLs so that an edge speaks
only for its own machines; then remote control end to end over it, configured from a
site file's [broker] keys."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from control_support import MACHINE, start_edge, wait_for
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from tls_support import Client, Pki, address, connect, make_pki, secure_mosquitto

from ci_env import running_in_ci
from machinetwin.edge.agent import load_edge_config
from machinetwin.errors import ConfigError
from machinetwin.hub.auth import Role, User
from machinetwin.hub.broker_security import acl_text, password_line
from machinetwin.hub.commands import AuditLog, CommandService, CommandSigner
from machinetwin.protocols.broker import BrokerConfig
from mosquitto_server import MosquittoServer, find_mosquitto

OTHER = "tianjin-vmc-1"
PASSWORDS = {"hub": "hub-secret-1", "harbin": "harbin-secret-2", "tianjin": "tianjin-secret-3"}
EDGES = {"harbin": [MACHINE], "tianjin": [OTHER]}

pytestmark = pytest.mark.service


@dataclass
class Secure:
    server: MosquittoServer
    pki: Pki
    folder: Path

    def client(self, user: str | None, client_id: str, password: str | None = None,
               ca: Path | None = None) -> tuple[Client, object]:  # fmt: skip
        pw = password if password is not None else PASSWORDS.get(user or "")
        return connect(address(self.server, self.pki, user, pw, ca), client_id)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    if find_mosquitto() is None:
        if running_in_ci():
            pytest.fail("mosquitto is required in CI but is not installed")
        pytest.skip("mosquitto not installed: run `sudo make system-deps` (installs mosquitto)")
    folder = tmp_path_factory.mktemp("secure-mosquitto")
    pki = make_pki(folder / "pki")
    server = secure_mosquitto(folder / "broker", pki, PASSWORDS, EDGES, "hub")
    server.start()
    yield Secure(server, pki, folder)
    server.stop()


def _ok(rc: object) -> bool:
    return isinstance(rc, mqtt.ReasonCode) and not rc.is_failure


def test_only_tls_with_the_right_ca_and_password_gets_in(secure: Secure) -> None:
    good, rc = secure.client("harbin", "t-good")
    assert _ok(rc), rc
    good.close()
    for user, password, label in (("harbin", "wrong", "wrong password"),
                                  ("nobody", "x", "unknown user"), (None, None, "anonymous")):  # fmt: skip
        c, rc = secure.client(user, f"t-{label.replace(' ', '-')}", password)
        assert not _ok(rc), f"{label} got in"
        c.close()
    rogue, rc = secure.client("harbin", "t-rogue", ca=secure.pki.rogue_ca)
    assert isinstance(rc, ssl.SSLCertVerificationError), rc  # not the broker we trust
    # plaintext MQTT to the TLS port: no CONNACK ever
    plain = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-plain")
    plain.username_pw_set("harbin", PASSWORDS["harbin"])
    answers: list[object] = []
    plain.on_connect = lambda *a: answers.append(a[3])
    plain.connect("127.0.0.1", secure.server.port, 5)
    plain.loop_start()
    time.sleep(0.5)
    plain.loop_stop()
    assert answers == [] or not _ok(answers[0])


def test_a_listener_that_demands_client_certificates(secure: Secure) -> None:
    """tls_cert/tls_key: refused without the edge's certificate, let in with it."""
    from dataclasses import replace

    base = address(secure.server, secure.pki, "harbin", PASSWORDS["harbin"])
    base = replace(base, port=secure.server.mtls_port)  # type: ignore[attr-defined]
    bare, rc = connect(base, "t-no-cert")
    assert not _ok(rc), rc
    bare.close()
    with_cert = replace(base, tls_cert=str(secure.pki.client_cert),
                        tls_key=str(secure.pki.client_key))  # fmt: skip
    c, rc = connect(with_cert, "t-cert")
    assert _ok(rc), rc
    c.close()


def _drain_until(c: Client, marker: bytes, timeout_s: float = 5.0) -> list[tuple[str, bytes]]:
    """Everything ``c`` received up to and including ``marker`` (sent last)."""
    seen: list[tuple[str, bytes]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            seen.append(c.messages.get(timeout=0.1))
        except Exception:  # noqa: BLE001 - queue.Empty: keep waiting
            continue
        if seen[-1][1] == marker:
            break
    return seen


def test_an_edge_cannot_publish_as_another_machine_nor_read_its_commands(secure: Secure) -> None:
    hub, rc = secure.client("hub", "t-hub")
    assert _ok(rc)
    harbin, _ = secure.client("harbin", "t-harbin")
    tianjin, _ = secure.client("tianjin", "t-tianjin")
    try:
        hub.client.subscribe([("mt/v1/+/data", 1), ("mt/v1/+/event", 1)])
        harbin.client.subscribe([(f"mt/v1/{OTHER}/cmd", 1), (f"mt/v1/{MACHINE}/cmd", 1)])
        tianjin.client.subscribe(f"mt/v1/{OTHER}/cmd", qos=1)
        time.sleep(0.3)  # subscriptions in place
        # harbin's edge tries to speak for tianjin's machine, then for its own
        harbin.publish(f"mt/v1/{OTHER}/data", b"forged")
        harbin.publish(f"mt/v1/{MACHINE}/data", b"own")
        seen = _drain_until(hub, b"own")
        assert (f"mt/v1/{MACHINE}/data", b"own") in seen
        assert all(p != b"forged" for _, p in seen)
        # ... and to inject a command into tianjin's edge (commands are the hub's)
        harbin.publish(f"mt/v1/{OTHER}/cmd", b"injected")
        # the hub's commands: tianjin's must not reach harbin, harbin's must
        hub.publish(f"mt/v1/{OTHER}/cmd", b"tianjin-secret")
        hub.publish(f"mt/v1/{MACHINE}/cmd", b"harbin-own")
        got = _drain_until(harbin, b"harbin-own")
        assert got == [(f"mt/v1/{MACHINE}/cmd", b"harbin-own")], got
        theirs = _drain_until(tianjin, b"tianjin-secret")
        assert theirs == [(f"mt/v1/{OTHER}/cmd", b"tianjin-secret")], theirs  # no injection
        # the hub's analytics worker files a finding as a machine's event
        hub.publish(f"mt/v1/{MACHINE}/event", b"finding")
        assert (f"mt/v1/{MACHINE}/event", b"finding") in _drain_until(hub, b"finding")
        time.sleep(0.2)
        assert hub.messages.empty() and harbin.messages.empty()
    finally:
        for c in (hub, harbin, tianjin):
            c.close()


def _site_file(folder: Path, secure: Secure, signer: CommandSigner) -> Path:
    """A site file whose [broker] uses TLS and a password file, relative paths."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(secure.pki.ca, folder / "ca.pem")
    pw = folder / "harbin.pass"
    pw.write_text(PASSWORDS["harbin"] + "\n")
    pw.chmod(0o600)
    (folder / "part.ngc").write_text("G0 X1\nM2\n")
    site = folder / "site.toml"
    site.write_text(f"""site = "harbin"
[broker]
host = "127.0.0.1"
port = {secure.server.port}
username = "harbin"
password_file = "harbin.pass"
tls_ca = "ca.pem"
[[machines]]
id = "{MACHINE}"
programs = ["part.ngc"]
[control]
hub_public_key = "{signer.public_key_b64}"
""")
    return site


def test_remote_control_round_trip_over_tls_with_per_edge_credentials(
    secure: Secure, tmp_path: Path
) -> None:
    """The edge's uplink, command channel and permit reports and the hub's command
    service, all through TLS and the ACL: a command runs and its answer comes back."""
    signer = CommandSigner(Ed25519PrivateKey.generate())
    config = load_edge_config(_site_file(tmp_path / "site", secure, signer))
    edge_address = config.broker.address()
    assert edge_address.tls_ca and edge_address.password == PASSWORDS["harbin"]
    hub_address = address(secure.server, secure.pki, "hub", PASSWORDS["hub"])
    service = CommandService(signer, AuditLog(tmp_path / "audit.sqlite"), hub_address)
    service.start()
    edge = start_edge(tmp_path / "site", signer, 0, edge_address)
    try:
        edge.executor.permits.grant(MACHINE, 5)
        assert wait_for(lambda: service.gate(MACHINE).allowed, 10), service.gate(MACHINE).reason
        status = service.issue(User("otto", Role.OPERATOR), MACHINE, "feed_override",
                               {"percent": 42})  # fmt: skip
        assert service.wait(status.command.id, ("done", "rejected"), 10).state == "done"
        assert edge.machine.feed_override == 42
        assert edge.agent.uplinks[MACHINE].stats.acked == 0  # no ingest here: only sent
        assert edge.agent.uplinks[MACHINE].stats.connected  # the uplink got in too
    finally:
        edge.stop()
        service.stop()
        service.audit.close()


@pytest.mark.parametrize("broker, message", [
    ({"tls_ca": "missing.pem"}, "broker.tls_ca: no readable file"),
    ({"username": "u", "password_file": "missing.pass"}, "broker.password_file: no readable file"),
    ({"tls_ca": "ca.pem", "tls_cert": "ca.pem"}, "tls_cert and tls_key go together"),
    ({"username": "u", "password": "p", "password_file": "p.pass"}, "password or password_file"),
    ({"password": "p"}, "a password needs a username"),
])  # fmt: skip
def test_broker_config_errors_name_the_key(tmp_path: Path, broker: dict, message: str) -> None:
    (tmp_path / "ca.pem").write_text("not checked here\n")
    (tmp_path / "p.pass").write_text("secret\n")
    with pytest.raises(ConfigError, match=message):
        BrokerConfig(**broker).resolved(tmp_path) if "missing" in str(broker) else _parse(broker)


def _parse(broker: dict) -> BrokerConfig:
    from machinetwin.configfile import parse_toml

    body = "\n".join(f'{k} = "{v}"' for k, v in broker.items())
    return parse_toml(body, BrokerConfig, "site.toml")


def test_a_password_file_open_to_others_is_refused(tmp_path: Path) -> None:
    pw = tmp_path / "edge.pass"
    pw.write_text("secret\n")
    pw.chmod(0o644)
    config = BrokerConfig(username="harbin", password_file="edge.pass").resolved(tmp_path)
    with pytest.raises(ConfigError, match="broker.password_file: .* chmod 600"):
        config.address()
    pw.chmod(0o600)
    assert config.address().password == "secret"


@settings(max_examples=20, deadline=None)
@given(st.text(st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1, max_size=40))
def test_password_lines_match_mosquitto_passwd(password: str) -> None:
    """Our hashed entry is what mosquitto_passwd writes for the same salt."""
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd not installed") if not running_in_ci() else pytest.fail(
            "mosquitto_passwd is required in CI"
        )
    import base64
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pw"
        path.write_text("")
        subprocess.run([tool, "-b", str(path), "edge", password], check=True,
                       capture_output=True, env={**os.environ, "LC_ALL": "C.UTF-8"})  # fmt: skip
        theirs = path.read_text().strip()
    _, _, iterations, salt, _ = theirs.split("$")
    ours = password_line("edge", password, int(iterations), base64.b64decode(salt))
    assert ours == theirs


def test_acl_refuses_a_machine_claimed_by_two_edges_and_bad_ids() -> None:
    with pytest.raises(ConfigError, match="belongs to both"):
        acl_text("hub", {"a": ["m-1"], "b": ["m-1"]})
    with pytest.raises(ConfigError, match="invalid machine id"):
        acl_text("hub", {"a": ["m/#"]})
    with pytest.raises(ConfigError, match="the hub's user"):
        acl_text("hub", {"hub": ["m-1"]})


def test_hub_and_site_files_name_the_file_and_key_of_a_missing_tls_file(tmp_path: Path) -> None:
    from machinetwin.hub.service import load_hub_config

    hub = tmp_path / "hub.toml"
    hub.write_text('[broker]\nhost = "broker.lab"\nport = 8883\ntls_ca = "lab-ca.pem"\n')
    with pytest.raises(
        ConfigError, match=r"hub\.toml: broker\.tls_ca: no readable file .*lab-ca\.pem"
    ):
        load_hub_config(hub)
    (tmp_path / "lab-ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    assert load_hub_config(hub).broker.address().tls_ca == str(tmp_path / "lab-ca.pem")
    (tmp_path / "part.ngc").write_text("G0 X1\nM2\n")
    site = tmp_path / "site.toml"
    site.write_text('site = "harbin"\n[broker]\nusername = "harbin"\npassword_file = "h.pass"\n'
                    '[[machines]]\nid = "m-1"\nprograms = ["part.ngc"]\n')  # fmt: skip
    with pytest.raises(ConfigError, match=r"site\.toml: broker\.password_file: no readable file"):
        load_edge_config(site)
