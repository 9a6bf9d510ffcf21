"""A test-made PKI (CA, broker and client certificates via ``cryptography``) and a
Mosquitto with TLS, per-edge passwords and the ACL of ``hub.broker_security``."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import queue
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from machinetwin.hub.broker import free_port
from machinetwin.hub.broker_security import acl_text, password_line, security_lines, tls_listener
from machinetwin.protocols.broker import BrokerAddress
from mosquitto_server import MosquittoServer


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())  # fmt: skip
    fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return path


def _cert(subject: str, key, issuer: str, issuer_key, ca: bool,
          names: list[x509.GeneralName]) -> x509.Certificate:  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    rogue_ca: Path  # a CA the broker's certificate does not come from
    client_cert: Path  # an edge's certificate (CN harbin), signed by ca
    client_key: Path


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, rogue_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _cert("machinetwin test CA", ca_key, "machinetwin test CA", ca_key, True, [])
    rogue = _cert("rogue CA", rogue_key, "rogue CA", rogue_key, True, [])
    names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    server = _cert("broker", server_key, "machinetwin test CA", ca_key, False, names)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert("harbin", client_key, "machinetwin test CA", ca_key, False, [])
    pem = serialization.Encoding.PEM
    (folder / "harbin.pem").write_bytes(client.public_bytes(pem))
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "rogue-ca.pem").write_bytes(rogue.public_bytes(pem))
    (folder / "server.pem").write_bytes(server.public_bytes(pem))
    return Pki(folder / "ca.pem", folder / "server.pem",
               _write_key(server_key, folder / "server.key"), folder / "rogue-ca.pem",
               folder / "harbin.pem", _write_key(client_key, folder / "harbin.key"))  # fmt: skip


def secure_mosquitto(folder: Path, pki: Pki, passwords: dict[str, str],
                     edges: dict[str, list[str]], hub_user: str) -> MosquittoServer:  # fmt: skip
    """A Mosquitto that listens only with TLS and lets in only the given users; a
    second port (``server.mtls_port``) also demands a client certificate."""
    server = MosquittoServer(folder)
    server.mtls_port = free_port()  # type: ignore[attr-defined]
    pw, acl = folder / "passwords", folder / "acl"
    pw.write_text("\n".join(password_line(u, p) for u, p in passwords.items()) + "\n")
    acl.write_text(acl_text(hub_user, edges))
    lines = [*security_lines(pw, acl),
             *tls_listener(server.port, pki.server_cert, pki.server_key, pki.ca, "127.0.0.1"),
             *tls_listener(server.mtls_port, pki.server_cert, pki.server_key, pki.ca,  # type: ignore[attr-defined]
                           "127.0.0.1", require_certificate=True),
             "persistence false", f"log_dest file {server.log}", "log_type all",
             "set_tcp_nodelay true"]  # fmt: skip
    if os.geteuid() == 0:
        lines.append("user root")  # read the test's 0600 files (it drops to 'mosquitto' else)
    server.config.write_text("\n".join(lines) + "\n")
    return server


def address(server: MosquittoServer, pki: Pki, user: str | None, password: str | None,
            ca: Path | None = None) -> BrokerAddress:  # fmt: skip
    return BrokerAddress("127.0.0.1", server.port, user, password, keepalive_s=5,
                         tls_ca=str(ca or pki.ca))  # fmt: skip


@dataclass
class Client:
    """A plain paho client for probing the broker; ``messages`` gets (topic, payload)."""

    client: mqtt.Client
    connack: queue.Queue
    messages: queue.Queue

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect(addr: BrokerAddress, client_id: str) -> tuple[Client, object]:
    """(client, the CONNACK's reason code, or the exception the connection raised)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    connack: queue.Queue = queue.Queue()
    messages: queue.Queue = queue.Queue()
    client.on_connect = lambda _c, _u, _f, rc, _p=None: connack.put(rc)
    # a broker that drops the connection (no client certificate) answers with that
    client.on_disconnect = lambda *_: connack.put("disconnected")
    client.on_message = lambda _c, _u, m: messages.put((m.topic, m.payload))
    addr.configure(client)
    try:
        client.connect(addr.host, addr.port, 5)
    except Exception as exc:  # noqa: BLE001 - the TLS handshake failing is the answer
        return Client(client, connack, messages), exc
    client.loop_start()
    try:
        rc = connack.get(timeout=5)
    except queue.Empty:
        rc = "no CONNACK"
    return Client(client, connack, messages), rc
