"""``machinetwin hub user ...``: manage the hub's users from the hub's machine.

Every command finds the user directory from ``--store PATH`` (the hub's DuckDB file;
the directory is ``users.sqlite`` next to it), ``--config HUB.toml`` (its ``store``),
or ``--config`` given to ``machinetwin hub`` itself. It works while the hub runs
(SQLite WAL): role changes, disabled users and revoked tokens apply to the running
hub's next request. Passwords are prompted twice (hidden) or read as one line from
standard input with ``--password-stdin``; tokens are printed once, to stdout alone,
so that ``TOKEN=$(machinetwin hub user token ...)`` works.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..errors import ConfigError
from .auth import AuthError, Role, UserDirectory, users_path_for

user_app = typer.Typer(help="Manage the hub's users, roles and API tokens.",
                       no_args_is_help=True)  # fmt: skip

err = Console(stderr=True)

ROLE_NAMES = ", ".join(r.name.lower() for r in Role)
STORE = typer.Option(None, "--store", dir_okay=False,
                     help="The hub's store file; users.sqlite next to it")  # fmt: skip
CONFIG = typer.Option(None, "--config", "-c", exists=True, dir_okay=False,
                      help="Hub file (TOML) whose store to use")  # fmt: skip
USERNAME = typer.Argument(..., help="Username")
PASSWORD_STDIN = typer.Option(False, "--password-stdin",
                              help="Read the password as one line from standard input")  # fmt: skip


def directory_path(ctx: typer.Context, store: Path | None, config: Path | None) -> Path:
    """Where the directory is: ``--store``, else ``--config`` (own or the hub's)."""
    config = config or (ctx.obj or {}).get("hub_config")
    if store is not None and config is not None:
        raise typer.BadParameter("give --store or --config, not both", param_hint="--store")
    if store is not None:
        return users_path_for(store)
    if config is not None:
        from .service import load_hub_config

        return users_path_for(load_hub_config(config).store)
    raise typer.BadParameter("say which hub: --store PATH or --config HUB.toml",
                             param_hint="--store/--config")  # fmt: skip


@contextmanager
def opened(ctx: typer.Context, store: Path | None, config: Path | None) -> Iterator[UserDirectory]:
    """The user directory, with every refusal printed as one red line and exit 1."""
    try:
        path = directory_path(ctx, store, config)
        with UserDirectory(path) as users:
            yield users
    except (AuthError, ConfigError) as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(1) from None


def read_password(from_stdin: bool, what: str = "Password") -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    return typer.prompt(what, hide_input=True, confirmation_prompt=True)


def parse_role(text: str) -> Role:
    try:
        return Role.parse(text)
    except AuthError as exc:
        raise typer.BadParameter(str(exc), param_hint="ROLE") from None


@user_app.command("add")
def user_add(
    ctx: typer.Context,
    username: str = USERNAME,
    role: str = typer.Option(..., "--role", "-r", help=f"One of {ROLE_NAMES}"),
    password_stdin: bool = PASSWORD_STDIN,
    store: Path | None = STORE,
    config: Path | None = CONFIG,
) -> None:
    """Add a user with a password (at least 12 characters) and a role."""
    level = parse_role(role)
    with opened(ctx, store, config) as users:
        users.add_user(username, read_password(password_stdin), level)
    err.print(f"added {username} ({level.name.lower()})")


@user_app.command("list")
def user_list(ctx: typer.Context, store: Path | None = STORE, config: Path | None = CONFIG) -> None:
    """Every user with role, state and API token names."""
    with opened(ctx, store, config) as users:
        accounts = users.accounts()
    table = Table("user", "role", "state", "API tokens")
    for a in accounts:
        state = "disabled" if a.disabled else "enabled"
        if a.locked_until is not None:
            until = datetime.fromtimestamp(a.locked_until, UTC).strftime("%H:%M:%S UTC")
            state += f", locked until {until}"
        table.add_row(a.username, a.role.name.lower(), state, ", ".join(a.tokens))
    Console().print(table)


@user_app.command("passwd")
def user_passwd(
    ctx: typer.Context,
    username: str = USERNAME,
    password_stdin: bool = PASSWORD_STDIN,
    store: Path | None = STORE,
    config: Path | None = CONFIG,
) -> None:
    """Set a new password; the user's sessions end and a lockout lifts."""
    with opened(ctx, store, config) as users:
        users.set_password(username, read_password(password_stdin, "New password"))
    err.print(f"password of {username} changed; their sessions have ended")


@user_app.command("role")
def user_role(
    ctx: typer.Context,
    username: str = USERNAME,
    role: str = typer.Argument(..., help=f"One of {ROLE_NAMES}"),
    store: Path | None = STORE,
    config: Path | None = CONFIG,
) -> None:
    """Change a user's role (applies to their sessions and tokens at once)."""
    level = parse_role(role)
    with opened(ctx, store, config) as users:
        users.set_role(username, level)
    err.print(f"{username} is now {level.name.lower()}")


@user_app.command("disable")
def user_disable(
    ctx: typer.Context, username: str = USERNAME, store: Path | None = STORE,
    config: Path | None = CONFIG,
) -> None:  # fmt: skip
    """Stop a user: no login, sessions ended, tokens refused until enabled again."""
    with opened(ctx, store, config) as users:
        users.set_disabled(username, True)
    err.print(f"{username} disabled")


@user_app.command("enable")
def user_enable(
    ctx: typer.Context, username: str = USERNAME, store: Path | None = STORE,
    config: Path | None = CONFIG,
) -> None:  # fmt: skip
    """Let a disabled user log in again."""
    with opened(ctx, store, config) as users:
        users.set_disabled(username, False)
    err.print(f"{username} enabled")


@user_app.command("token")
def user_token(
    ctx: typer.Context,
    username: str = USERNAME,
    token_name: str = typer.Argument(..., help="A name for the token, unique per user"),
    days: float | None = typer.Option(None, "--days", help="Expire after this many days"),
    store: Path | None = STORE,
    config: Path | None = CONFIG,
) -> None:
    """Create an API token and print it once (send it as Authorization: Bearer ...)."""
    ttl_s = None if days is None else days * 86400.0
    with opened(ctx, store, config) as users:
        token = users.create_token(username, token_name, ttl_s)
    typer.echo(token)
    err.print(f"token {token_name!r} of {username}: shown once, keep it secret")


@user_app.command("revoke")
def user_revoke(
    ctx: typer.Context,
    username: str = USERNAME,
    token_name: str = typer.Argument(..., help="The token's name"),
    store: Path | None = STORE,
    config: Path | None = CONFIG,
) -> None:
    """Revoke an API token: it stops working at the hub's next request."""
    with opened(ctx, store, config) as users:
        users.revoke_token(username, token_name)
    err.print(f"token {token_name!r} of {username} revoked")
