"""``machinetwin hub user ...`` through typer's CliRunner, on a real users.sqlite."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from machinetwin.cli import app
from machinetwin.hub.auth import Role, User, UserDirectory

runner = CliRunner()
PASSWORD = "a long password 1"


def run(*args: str, stdin: str | None = None) -> Result:
    return runner.invoke(app, ["hub", "user", *args], input=stdin)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "hub.duckdb"


def directory(store: Path) -> UserDirectory:
    return UserDirectory(store.parent / "users.sqlite")


def test_add_list_role_and_login(store: Path) -> None:
    r = run("add", "wang.li", "--role", "operator", "--password-stdin", "--store", str(store),
            stdin=PASSWORD + "\n")  # fmt: skip
    assert r.exit_code == 0, r.output
    r = run("role", "wang.li", "Maintainer", "--store", str(store))
    assert r.exit_code == 0 and "now maintainer" in r.stderr
    with directory(store) as users:
        assert users.authenticate("wang.li", PASSWORD) == User("wang.li", Role.MAINTAINER)
    listed = run("list", "--store", str(store))
    assert listed.exit_code == 0 and "wang.li" in listed.stdout and "maintainer" in listed.stdout


def test_passwords_are_prompted_twice_hidden(store: Path) -> None:
    # A mismatch asks again; the password never appears in the output.
    typed = f"{PASSWORD}\nsomething else\n{PASSWORD}x\n{PASSWORD}x\n"
    r = run("add", "zhao", "--role", "viewer", "--store", str(store), stdin=typed)
    assert r.exit_code == 0, r.output
    assert PASSWORD not in r.output and "do not match" in r.output.lower()
    with directory(store) as users:
        assert users.authenticate("zhao", PASSWORD + "x") is not None
    r = run("passwd", "zhao", "--store", str(store), stdin="short\nshort\n")
    assert r.exit_code == 1 and "password too short" in r.stderr


def test_a_token_is_printed_once_alone_and_revoked(store: Path) -> None:
    run("add", "ci.bot", "--role", "viewer", "--password-stdin", "--store", str(store),
        stdin=PASSWORD)  # fmt: skip
    r = run("token", "ci.bot", "nightly", "--days", "2", "--store", str(store))
    assert r.exit_code == 0, r.output
    token = r.stdout.strip()
    assert "\n" not in token
    with directory(store) as users:
        assert users.token_user(token) == User("ci.bot", Role.VIEWER)
    assert "nightly" in run("list", "--store", str(store)).stdout
    assert run("revoke", "ci.bot", "nightly", "--store", str(store)).exit_code == 0
    with directory(store) as users:
        assert users.token_user(token) is None
    again = run("revoke", "ci.bot", "nightly", "--store", str(store))
    assert again.exit_code == 1 and "no token named 'nightly'" in again.stderr


def test_disable_and_enable(store: Path) -> None:
    run("add", "wang.li", "--role", "viewer", "--password-stdin", "--store", str(store),
        stdin=PASSWORD)  # fmt: skip
    assert run("disable", "wang.li", "--store", str(store)).exit_code == 0
    assert "disabled" in run("list", "--store", str(store)).stdout
    with directory(store) as users:
        assert users.authenticate("wang.li", PASSWORD) is None
    assert run("enable", "wang.li", "--store", str(store)).exit_code == 0
    with directory(store) as users:
        assert users.authenticate("wang.li", PASSWORD) is not None


def test_the_hub_file_says_where_the_directory_is(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text('store = "data/lab.duckdb"\n')
    r = run("add", "wang.li", "--role", "admin", "--password-stdin", "--config", str(config),
            stdin=PASSWORD)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert (tmp_path / "data" / "users.sqlite").exists()
    # `machinetwin hub --config X user ...` reads the same file.
    r = runner.invoke(app, ["hub", "--config", str(config), "user", "list"])
    assert r.exit_code == 0 and "wang.li" in r.stdout


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["list"], 2, "--store PATH or --config"),
        (["add", "wang.li", "--role", "root", "--store", "x.duckdb"], 2, "unknown role 'root'"),
        (["add", "Wang Li", "--role", "viewer", "--password-stdin", "--store", "{store}"], 1,
         "invalid username 'Wang Li'"),
        (["role", "nobody", "viewer", "--store", "{store}"], 1, "no user 'nobody'"),
        (["token", "nobody", "t", "--store", "{store}"], 1, "no user 'nobody'"),
    ],
)  # fmt: skip
def test_mistakes_are_clear(store: Path, args: list[str], code: int, words: str) -> None:
    r = run(*[a.replace("{store}", str(store)) for a in args], stdin=PASSWORD)
    assert r.exit_code == code, r.output
    assert words in " ".join(r.output.split()).replace("│", "").replace("  ", " ")


def test_running_the_hub_still_needs_a_hub_file() -> None:
    r = runner.invoke(app, ["hub"])
    assert r.exit_code == 2 and "--config" in r.output
