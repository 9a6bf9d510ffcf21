"""``machinetwin hub ingest``: one hub ingest process (see :mod:`.ingest_main`).

Several of these with the same ``--share`` group and a PostgreSQL ``[store]`` split a
fleet's data between them through MQTT shared subscriptions.
"""

from __future__ import annotations

from pathlib import Path

import typer


def ingest_command(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", "-c", exists=True, dir_okay=False,
                                       help="Hub file (TOML): its \\[store] and \\[broker]"),
    share: str | None = typer.Option(None, "--share", metavar="GROUP",
                                     help="MQTT shared-subscription group; PostgreSQL only"),
    client_id: str | None = typer.Option(None, "--client-id", help="MQTT client id"),
) -> None:  # fmt: skip
    """Run hub ingest alone: MQTT in, the configured store, acks out (until Ctrl-C)."""
    from .ingest_main import main

    hub_config = config or (ctx.obj or {}).get("hub_config")
    if hub_config is None:
        raise typer.BadParameter("a hub file is needed", param_hint="--config")
    argv = ["--config", str(hub_config)]
    argv += ["--share", share] if share is not None else []
    argv += ["--client-id", client_id] if client_id is not None else []
    raise typer.Exit(main(argv))
