"""What authentication costs: logins (argon2id, production parameters) and the
per-request check of a session or API token, in the directory and through the API.

- ``login_ms``: ``authenticate`` with the right password.
- ``wrong_password_ms`` / ``unknown_user_ms``: a wrong password for a known user and any
  password for a username that does not exist; the two should be equal (the unknown
  user is checked against a dummy hash and makes the same write, so that timing does
  not reveal which names exist).
- ``session_lookup_us`` / ``token_lookup_us``: ``session_user`` / ``token_user`` on a
  file-backed directory (SQLite WAL), what every API request pays.
- ``api_open_us`` / ``api_authed_us``: one request through the FastAPI app, called
  directly as ASGI (no sockets): the open ``POST /api/logout`` without credentials and
  ``GET /api/me`` with an API token, two equally trivial routes; the difference,
  ``auth_overhead_us``, is what the gate and the role dependency add to a request.

Medians of repeated runs (the machine is shared: take them as orders of magnitude).
Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI

from machinetwin.hub import DuckDBStore
from machinetwin.hub.api import LiveSnapshot, create_api
from machinetwin.hub.auth import Role, UserDirectory

PASSWORD = "benchmark password 1"


def median_s(fn: Callable[[], object], n: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def ms(fn: Callable[[], object], n: int) -> float:
    return median_s(fn, n) * 1e3


async def asgi_request(app: FastAPI, method: str, path: str, headers: dict[str, str]) -> int:
    """One request straight into the ASGI app; its status code."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }  # fmt: skip
    status = 0

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def asgi_median_s(app: FastAPI, method: str, path: str, headers: dict[str, str],
                        expect: int, n: int) -> float:  # fmt: skip
    assert await asgi_request(app, method, path, headers) == expect
    times = []
    for _ in range(n):
        t = time.perf_counter()
        await asgi_request(app, method, path, headers)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (< 50 s)")
    args = parser.parse_args()
    logins, lookups = (10, 2000) if args.quick else (40, 20000)
    with tempfile.TemporaryDirectory() as tmp:
        users = UserDirectory(Path(tmp) / "users.sqlite", max_failures=10**9)
        user = users.add_user("wang.li", PASSWORD, Role.OPERATOR)
        session, token = users.create_session(user), users.create_token("wang.li", "bench")
        wrong = "not the password"
        out = {
            "login_ms": median_s(lambda: users.authenticate("wang.li", PASSWORD), logins) * 1e3,
            "wrong_password_ms": ms(lambda: users.authenticate("wang.li", wrong), logins),
            "unknown_user_ms": ms(lambda: users.authenticate("nobody", wrong), logins),
            "session_lookup_us": median_s(lambda: users.session_user(session), lookups) * 1e6,
            "token_lookup_us": median_s(lambda: users.token_user(token), lookups) * 1e6,
        }
        store = DuckDBStore(Path(tmp) / "hub.duckdb")
        app = create_api(store, LiveSnapshot, users)
        bearer = {"Authorization": f"Bearer {token}"}
        n = lookups // 2
        out["api_open_us"] = asyncio.run(
            asgi_median_s(app, "POST", "/api/logout", {}, 204, n)) * 1e6  # fmt: skip
        out["api_authed_us"] = asyncio.run(
            asgi_median_s(app, "GET", "/api/me", bearer, 200, n)) * 1e6  # fmt: skip
        out["auth_overhead_us"] = out["api_authed_us"] - out["api_open_us"]
        store.close()
        users.close()
    for key, value in out.items():
        print(f"{key:24s} {value:10.1f}")
    print(json.dumps({k: round(v, 2) for k, v in out.items()}))


if __name__ == "__main__":
    main()
