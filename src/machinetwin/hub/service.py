"""The hub process: broker (embedded unless one is configured), ingest, store, API.

``machinetwin hub --config HUB.toml`` runs it; the demo runs the same pieces in one
process. Without a ``[broker]`` section the hub starts its own broker, so one command
runs everything; with one, the same code talks to Mosquitto or EMQX.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ..configfile import load_toml
from ..protocols.broker import BrokerAddress, BrokerConfig
from .broker import EmbeddedBroker
from .duckdb_store import DuckDBStore
from .ingest import HubIngest

log = logging.getLogger(__name__)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HubConfig(Strict):
    store: Path = Path("hub.duckdb")
    broker: BrokerConfig | None = None  # None: start the embedded broker
    embedded_broker_port: int = Field(1883, ge=0, lt=65536)
    api_host: str = "127.0.0.1"
    api_port: int = Field(8080, ge=0, lt=65536)
    retention_days: float = Field(30.0, gt=0)


def load_hub_config(path: str | Path) -> HubConfig:
    """Read and validate a hub file; errors name the file, the key and the problem."""
    config = load_toml(path, HubConfig)
    if not config.store.is_absolute():
        config.store = Path(path).resolve().parent / config.store
    return config


@dataclass
class Hub:
    """The running hub's parts, started and stopped together."""

    config: HubConfig
    store: DuckDBStore | None = None
    broker: EmbeddedBroker | None = None
    ingest: HubIngest | None = None

    @property
    def broker_address(self) -> BrokerAddress:
        if self.config.broker is not None:
            return self.config.broker.address()
        assert self.broker is not None
        return BrokerAddress(self.broker.host, self.broker.port)

    def start(self) -> None:
        if self.config.broker is None:
            self.broker = EmbeddedBroker(port=self.config.embedded_broker_port)
            self.broker.start()
        self.store = DuckDBStore(self.config.store)
        self.ingest = HubIngest(self.store, self.broker_address)
        self.ingest.start()

    def stop(self) -> None:
        if self.ingest:
            self.ingest.stop()
        if self.store:
            self.store.close()
        if self.broker:
            self.broker.stop()

    def api_app(self):
        """The FastAPI app over this hub's store and live state."""
        from .api import create_api, live_view_from

        assert self.store is not None and self.ingest is not None
        return create_api(self.store, live_view_from(self.ingest))

    async def serve_api(self) -> None:
        import uvicorn

        config = uvicorn.Config(self.api_app(), host=self.config.api_host, port=self.config.api_port,
                                log_level="warning", lifespan="off")  # fmt: skip
        await uvicorn.Server(config).serve()


async def run_hub(config: HubConfig) -> None:
    hub = Hub(config)
    hub.start()
    try:
        await hub.serve_api()
    finally:
        hub.stop()


def main(config_path: str | Path) -> None:
    asyncio.run(run_hub(load_hub_config(config_path)))
