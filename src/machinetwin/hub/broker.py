"""The embedded MQTT broker (amqtt), so that one command runs everything.

It runs on its own event loop in a background thread, on a loopback port, and the
hub and edges talk to it exactly as they would to Mosquitto or EMQX. Broker queues
are not trusted for durability anyway (the edge's buffer and the hub's acks are).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import warnings

from ..errors import ConfigError

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 5.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class EmbeddedBroker:
    """An amqtt broker in a thread: ``start()``, ``stop()``, ``port``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._broker = None

    def _config(self) -> dict:
        return {
            "listeners": {
                "default": {
                    "type": "tcp",
                    "bind": f"{self.host}:{self.port}",
                    "max_connections": 2000,
                }
            },  # fmt: skip
            "sys_interval": 0,
            "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
            "topic-check": {"enabled": False},
        }

    def start(self, timeout_s: float = 10.0) -> None:
        self.thread = threading.Thread(target=self._run, name="mqtt-broker", daemon=True)
        self.thread.start()
        if not self.ready.wait(timeout_s) or self.error:
            raise ConfigError(f"embedded MQTT broker on {self.host}:{self.port} did not start: "
                              f"{self.error or 'timeout'}")  # fmt: skip

    def _run(self) -> None:
        from amqtt.broker import Broker

        # amqtt logs its own retries (e.g. PUBACK time-outs of departed clients) as errors;
        # delivery is guaranteed by the edge buffer and the hub's acks, not by the broker
        amqtt_log = logging.getLogger("amqtt")
        amqtt_log.setLevel(logging.CRITICAL)
        amqtt_log.propagate = False
        loop = asyncio.new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # amqtt warns about its own config defaults
                self._broker = Broker(self._config())  # needs a running loop
            await self._broker.start()

        try:
            loop.run_until_complete(boot())
        except BaseException as exc:  # reported to start()
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        loop.run_forever()
        try:
            loop.run_until_complete(asyncio.wait_for(self._broker.shutdown(), SHUTDOWN_TIMEOUT_S))
        except BaseException as exc:
            # amqtt closes its listeners only after every session's clean-up; when one of
            # those fails (seen under load), the port stayed bound and the clients stayed
            # connected to a dead broker. Close the listeners and every connection anyway.
            log.warning("embedded MQTT broker: shutdown failed (%r); closing it down", exc)
            for server in getattr(self._broker, "_servers", {}).values():
                with contextlib.suppress(Exception):
                    loop.run_until_complete(server.close_instance())
        finally:
            self._close_everything(loop)

    @staticmethod
    def _close_everything(loop: asyncio.AbstractEventLoop) -> None:
        """Cancel what is still running (client handlers), so their sockets close."""
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def stop(self) -> None:
        if self.loop and self.thread and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
