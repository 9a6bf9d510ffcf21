"""The hub process: broker (embedded unless one is configured), ingest, store, users,
API and web UI.

``machinetwin hub --config HUB.toml`` runs it; the demo runs the same pieces in one
process. Without a ``[broker]`` section the hub starts its own broker, so one command
runs everything; with one, the same code talks to Mosquitto or EMQX.

Next to the store the hub keeps its user directory (``users.sqlite``, see
``hub.auth``), the web UI's cookie-signing secret (``ui-secret``, generated on the
first start, readable by the owner only) and the UI's per-browser storage
(``ui-storage/``). On the first start ``Hub.admin_password`` holds the generated
password of ``admin``, which the caller prints once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..configfile import load_toml
from ..protocols.broker import BrokerAddress, BrokerConfig
from .auth import ADMIN_USERNAME, UserDirectory, users_path_for
from .broker import EmbeddedBroker
from .commands import CommandService, open_command_service
from .ingest import HubIngest
from .maintenance import WorkOrderBook, work_orders_path_for
from .store import Store
from .store_config import StoreConfig, open_store

if TYPE_CHECKING:
    from .analytics_worker import AnalyticsWorker

log = logging.getLogger(__name__)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HubConfig(Strict):
    store: Path = Path("hub.duckdb")  # the DuckDB file; users, audit, UI files live beside it
    store_backend: StoreConfig = Field(default_factory=StoreConfig)  # a [store] table
    broker: BrokerConfig | None = None  # None: start the embedded broker
    embedded_broker_port: int = Field(1883, ge=0, lt=65536)
    api_host: str = "127.0.0.1"
    api_port: int = Field(8080, ge=0, lt=65536)
    retention_days: float = Field(30.0, gt=0)
    ui: bool = True  # serve the web UI at / (the API stays under /api)
    analytics: bool = True  # condition monitoring in a worker process (hub/analytics_worker.py)

    @model_validator(mode="before")
    @classmethod
    def _store_table(cls, data: object) -> object:
        """``[store]`` (backend, dsn, schema, path) instead of ``store = "FILE"``."""
        if isinstance(data, dict) and isinstance(data.get("store"), dict):
            table = data["store"]
            data = {**data, "store_backend": table, "store": table.get("path", "hub.duckdb")}
        return data


def load_hub_config(path: str | Path) -> HubConfig:
    """Read and validate a hub file; errors name the file, the key and the problem."""
    config = load_toml(path, HubConfig)
    if not config.store.is_absolute():
        config.store = Path(path).resolve().parent / config.store
    if config.broker is not None:  # TLS and password files, relative to the file
        config.broker = config.broker.resolved(Path(path).resolve().parent, f"{path}: broker")
    return config


@dataclass
class Hub:
    """The running hub's parts, started and stopped together."""

    config: HubConfig
    store: Store | None = None
    broker: EmbeddedBroker | None = None
    ingest: HubIngest | None = None
    users: UserDirectory | None = None
    commands: CommandService | None = None  # remote control: signer, audit log, publisher
    maintenance: WorkOrderBook | None = None  # work orders
    analytics: AnalyticsWorker | None = None  # condition monitoring, its own process
    admin_password: str | None = None  # set once, on the first start: print it

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
        self.store = open_store(self.config.store_backend, self.config.store)
        self.users = UserDirectory(users_path_for(self.config.store))
        self.admin_password = self.users.ensure_admin()
        self.maintenance = WorkOrderBook(work_orders_path_for(self.config.store))
        self.ingest = HubIngest(self.store, self.broker_address)
        self.ingest.start()
        self.commands = open_command_service(self.config.store, self.broker_address)
        self.commands.position_of = self._live_position  # pre-flight starts where the tool is
        self.commands.start()
        if self.config.analytics:
            from .analytics_worker import AnalyticsWorker  # scipy and friends: only when used

            self.analytics = AnalyticsWorker(self.broker_address)
            self.analytics.start()

    def stop(self) -> None:
        if self.analytics:
            self.analytics.stop()
        if self.commands:
            self.commands.stop()
            self.commands.audit.close()
        if self.ingest:
            self.ingest.stop()
        if self.store:
            self.store.close()
        if self.users:
            self.users.close()
        if self.maintenance:
            self.maintenance.close()
        if self.broker:
            self.broker.stop()

    def api_app(self):
        """The FastAPI app over this hub's store and live state."""
        from .api import create_api, live_view_from

        assert self.store is not None and self.ingest is not None
        live = live_view_from(self.ingest)
        app = create_api(self.store, live, users=self.users, commands=self.commands,
                         maintenance=self.maintenance)  # fmt: skip
        if self.config.ui:
            self._mount_ui(app, live)
        return app

    def _mount_ui(self, app, live) -> None:  # noqa: ANN001 - FastAPI app, LiveView
        from ..machine import load_machine_config
        from ..ui import UiContext, mount_ui

        assert self.store is not None
        context = UiContext(self.store, live, self.users, load_machine_config(),
                            machine_state=self._machine_state, commands=self.commands,
                            maintenance=self.maintenance)  # fmt: skip
        data_dir = Path(self.config.store).resolve().parent
        mount_ui(app, context, ui_secret(data_dir / "ui-secret"), data_dir / "ui-storage")

    def _live_position(self, machine: str) -> tuple[float, float, float] | None:
        from .preflight import live_position  # the twin's modules: only when a pre-flight runs

        return live_position(self._machine_state(machine))

    def _machine_state(self, machine: str):  # noqa: ANN202 - LiveState | None
        """A copy of one machine's live state, taken under ingest's lock."""
        from dataclasses import replace

        assert self.ingest is not None
        with self.ingest.lock:
            state = self.ingest.live.get(machine)
            if state is None:
                return None
            return replace(state, values=dict(state.values),
                           active_alarms=list(state.active_alarms))  # fmt: skip

    @property
    def ui_url(self) -> str:
        host = (
            self.config.api_host if self.config.api_host not in ("0.0.0.0", "::") else "127.0.0.1"
        )
        return f"http://{host}:{self.config.api_port}/"

    async def serve_api(self) -> None:
        import uvicorn

        config = uvicorn.Config(self.api_app(), host=self.config.api_host, port=self.config.api_port,
                                log_level="warning", lifespan="on")  # fmt: skip
        self.server = uvicorn.Server(config)
        await self.server.serve()

    def stop_api(self) -> None:
        """Ask the API server to finish (NiceGUI's shutdown stops the page timers): await
        the ``serve_api`` task afterwards, before the store closes under the pages."""
        server = getattr(self, "server", None)
        if server is not None:
            server.should_exit = True


def ui_secret(path: Path) -> str:
    """The UI's cookie-signing secret: generated on the first start, owner-only."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    secret = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    return secret


def login_message(hub: Hub) -> str:
    """Where to log in; the generated admin password only on the first start."""
    lines = [f"web UI:   {hub.ui_url}   (API docs: {hub.ui_url}docs)"]
    if hub.commands is not None:
        lines.append(f"remote control: sites trust this hub with [control] hub_public_key = "
                     f'"{hub.commands.signer.public_key_b64}"')  # fmt: skip
    if hub.admin_password:
        lines += [f"user:     {ADMIN_USERNAME}",
                  f"password: {hub.admin_password}   (generated at this start, shown only once)"]  # fmt: skip
    else:
        lines.append("log in with your user (`machinetwin hub user add` creates users)")
    return "\n".join(lines)


async def run_hub(config: HubConfig) -> None:
    hub = Hub(config)
    hub.start()
    print(login_message(hub), flush=True)
    try:
        await hub.serve_api()
    finally:
        hub.stop()


def main(config_path: str | Path) -> None:
    asyncio.run(run_hub(load_hub_config(config_path)))
