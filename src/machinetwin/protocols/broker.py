"""Where the MQTT broker is, as the edges and the hub both need to know."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


@dataclass
class BrokerAddress:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 5


class BrokerConfig(BaseModel):
    """The ``[broker]`` section of a site or hub file."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(1883, gt=0, lt=65536)
    username: str | None = None
    password: str | None = None
    keepalive_s: int = Field(5, gt=0)

    def address(self) -> BrokerAddress:
        return BrokerAddress(self.host, self.port, self.username, self.password, self.keepalive_s)
