"""Where the MQTT broker is, and how to reach it safely, as the edges and the hub both
need to know.

Transport security (``[broker]`` keys): ``tls_ca`` (PEM of the CA that signed the
broker's certificate) turns on TLS with certificate and host-name verification;
``tls_cert``/``tls_key`` add a client certificate where the broker asks for one;
``username`` with ``password_file`` (a file holding only the password, readable by the
edge's user alone) or ``password`` are the per-edge broker credentials. Relative paths
are relative to the config file. The embedded broker (amqtt) of the one-command demo
listens on loopback only and stays plaintext.
"""

from __future__ import annotations

import os
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import ConfigError


@dataclass
class BrokerAddress:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 5
    tls_ca: str | None = None  # PEM file: TLS with verification when set
    tls_cert: str | None = None  # client certificate (PEM), with tls_key
    tls_key: str | None = None

    def configure(self, client: Any) -> None:
        """Credentials and TLS on a paho ``mqtt.Client`` before it connects."""
        if self.username:
            client.username_pw_set(self.username, self.password)
        if self.tls_ca:
            client.tls_set(ca_certs=self.tls_ca, certfile=self.tls_cert, keyfile=self.tls_key,
                           cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)  # fmt: skip


class BrokerConfig(BaseModel):
    """The ``[broker]`` section of a site or hub file."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(1883, gt=0, lt=65536)
    username: str | None = None
    password: str | None = None
    password_file: Path | None = None  # a file holding the password (instead of password)
    keepalive_s: int = Field(5, gt=0)
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @model_validator(mode="after")
    def _pairs(self) -> BrokerConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        if (self.password is not None or self.password_file is not None) and not self.username:
            raise ValueError("a password needs a username")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.tls_cert is not None and self.tls_ca is None:
            raise ValueError("a client certificate needs tls_ca (TLS) too")
        return self

    def resolved(self, base: Path, where: str = "broker") -> BrokerConfig:
        """Paths made absolute against ``base`` (the config file's folder) and checked:
        ConfigError names the key and the file when one is missing or unreadable."""
        changes: dict[str, Path] = {}
        for key in ("password_file", "tls_ca", "tls_cert", "tls_key"):
            path = getattr(self, key)
            if path is None:
                continue
            path = path if path.is_absolute() else base / path
            if not path.is_file() or not os.access(path, os.R_OK):
                raise ConfigError(f"{where}.{key}: no readable file {path}")
            changes[key] = path
        return self.model_copy(update=changes)

    def address(self) -> BrokerAddress:
        return BrokerAddress(self.host, self.port, self.username, self._password(),
                             self.keepalive_s, _str(self.tls_ca), _str(self.tls_cert),
                             _str(self.tls_key))  # fmt: skip

    def _password(self) -> str | None:
        if self.password_file is None:
            return self.password
        path = self.password_file
        try:
            st = os.stat(path)
            text = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"broker.password_file: cannot read {path}: {exc.strerror}") from None
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"broker.password_file: {path} is open to group or others "
                              f"(mode {stat.S_IMODE(st.st_mode):o}); chmod 600 it")  # fmt: skip
        if not text:
            raise ConfigError(f"broker.password_file: {path} is empty")
        return text


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)
