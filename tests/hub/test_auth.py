"""The hub's user directory: real argon2id and SQLite, a clock the tests move.

Most tests use a cheap argon2 hasher (same algorithm, small parameters) so that
hundreds of logins stay fast; the storage test uses the production defaults.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import httpx
import pytest
import uvicorn
from argon2 import PasswordHasher, Type
from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.websockets import WebSocketDisconnect
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from machinetwin.hub import DuckDBStore
from machinetwin.hub.api import (
    SESSION_COOKIE,
    LiveSnapshot,
    LoginLimit,
    create_api,
    require_role,
)
from machinetwin.hub.auth import (
    API_TOKEN_PREFIX,
    MIN_PASSWORD_LENGTH,
    SESSION_PREFIX,
    USERNAME_PATTERN,
    AuthError,
    Role,
    User,
    UserDirectory,
    users_path_for,
)
from machinetwin.model import Alarm, AlarmCode, Severity

PASSWORD = "correct horse battery"
MAX_FAILURES = 3
LOCKOUT_S = 60.0
# Hypothesis tests below reuse one directory across examples on purpose: what they
# call leaves it unchanged (lookups that find nobody, requests that are refused).
REUSED = HealthCheck.function_scoped_fixture


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


class CountingHasher(PasswordHasher):
    """A cheap argon2id hasher that counts verifications (what the hash check costs)
    and can hold wrong-password checks until released."""

    def __init__(self, time_cost: int = 1) -> None:
        super().__init__(time_cost=time_cost, memory_cost=1024, parallelism=1)
        self.verified: list[str] = []
        self.hold = threading.Event()
        self.hold.set()
        self.waiting = threading.Semaphore(0)

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verified.append(str(hash))
        if password != PASSWORD and not self.hold.is_set():
            self.waiting.release()
            self.hold.wait(10)
        return super().verify(hash, password)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


@pytest.fixture
def users(clock: Clock, hasher: CountingHasher) -> Iterator[UserDirectory]:
    d = UserDirectory(":memory:", clock=clock, hasher=hasher, max_failures=MAX_FAILURES,
                      lockout_s=LOCKOUT_S)  # fmt: skip
    d.add_user("wang.li", PASSWORD, Role.OPERATOR)
    d.add_user("zhao", PASSWORD + "!", Role.ADMIN)
    yield d
    d.close()


@pytest.fixture
def populated(users: UserDirectory) -> UserDirectory:
    users.create_token("wang.li", "ci")
    users.create_session(User("zhao", Role.ADMIN))
    return users


# --- storage ---------------------------------------------------------------------------------


def test_passwords_and_tokens_are_stored_only_hashed(tmp_path: Path) -> None:
    path = users_path_for(tmp_path / "hub.duckdb")
    assert path == tmp_path / "users.sqlite"
    secret = "Plaintext-Marker-7f3a9c-never-on-disk"
    d = UserDirectory(path)  # production argon2 parameters
    user = d.add_user("wang.li", secret, Role.VIEWER)
    session, token = d.create_session(user), d.create_token("wang.li", "ci")
    on_disk = b"".join(p.read_bytes() for p in tmp_path.glob("users.sqlite*"))
    for plain in (secret, session, token):
        assert plain.encode() not in on_disk
    assert hashlib.sha256(session.encode()).digest() in on_disk
    assert path.stat().st_mode & 0o777 == 0o600
    d.close()

    (stored,) = sqlite3.connect(path).execute("SELECT pw_hash FROM users").fetchone()
    default = PasswordHasher()
    assert stored.startswith("$argon2id$")
    assert f"m={default.memory_cost},t={default.time_cost},p={default.parallelism}" in stored
    assert default.type is Type.ID and default.verify(stored, secret)
    reopened = UserDirectory(path)
    assert reopened.authenticate("wang.li", secret) == user
    assert reopened.session_user(session) == user and reopened.token_user(token) == user
    reopened.close()


def test_a_changed_hasher_rehashes_at_the_next_good_login(tmp_path: Path) -> None:
    path = tmp_path / "users.sqlite"
    with UserDirectory(path, hasher=CountingHasher(time_cost=1)) as d:
        d.add_user("wang.li", PASSWORD, Role.VIEWER)

    def stored() -> str:
        return sqlite3.connect(path).execute("SELECT pw_hash FROM users").fetchone()[0]

    assert ",t=1," in stored()
    with UserDirectory(path, hasher=CountingHasher(time_cost=2)) as d:
        assert d.authenticate("wang.li", "wrong password!") is None
        assert ",t=1," in stored()  # only a good login may rehash
        assert d.authenticate("wang.li", PASSWORD) == User("wang.li", Role.VIEWER)
        assert ",t=2," in stored()
        assert d.authenticate("wang.li", PASSWORD) is not None


# --- logins ----------------------------------------------------------------------------------


def test_right_password_logs_in_with_the_users_role(users: UserDirectory) -> None:
    assert users.authenticate("wang.li", PASSWORD) == User("wang.li", Role.OPERATOR)
    assert users.authenticate("zhao", PASSWORD + "!") == User("zhao", Role.ADMIN)


@pytest.mark.parametrize(
    "username, password",
    [
        ("wang.li", PASSWORD + "x"),  # wrong password
        ("wang.li", PASSWORD.upper()),
        ("wang.li", ""),
        ("zhao", PASSWORD),  # another user's password
        ("nobody", PASSWORD),  # unknown user
        ("Wang.Li", PASSWORD),  # names are exact
        ("", PASSWORD),
        ("wang.li' OR '1'='1", PASSWORD),
        ("wang.li", "x" * 100_000),  # longer than any password may be
    ],
)
def test_wrong_credentials_are_refused_at_the_cost_of_one_hash_check(
    users: UserDirectory, hasher: CountingHasher, username: str, password: str
) -> None:
    hasher.verified.clear()
    assert users.authenticate(username, password) is None
    # Exactly one argon2 check whatever the reason: timing does not reveal which
    # usernames exist.
    assert len(hasher.verified) == 1


def test_refusals_write_alike_whether_the_user_exists_or_not(
    users: UserDirectory, hasher: CountingHasher
) -> None:
    # A commit costs an fsync: a known user's refused attempt must not be the only one
    # that writes, or timing would tell which names exist.
    def writes(username: str) -> int:
        before = users._db.total_changes
        assert users.authenticate(username, "wrong password!") is None
        return users._db.total_changes - before

    assert writes("wang.li") == writes("nobody") == 1
    for _ in range(MAX_FAILURES - 2):
        writes("wang.li")
    writes("wang.li")  # the attempt that locks the user out
    assert writes("wang.li") == writes("nobody") == 1  # while locked out


def test_a_disabled_user_is_refused_and_loses_sessions_and_tokens(
    users: UserDirectory, hasher: CountingHasher
) -> None:
    user = users.authenticate("wang.li", PASSWORD)
    assert user is not None
    session, token = users.create_session(user), users.create_token("wang.li", "script")
    users.set_disabled("wang.li", True)
    hasher.verified.clear()
    assert users.authenticate("wang.li", PASSWORD) is None
    assert len(hasher.verified) == 1
    assert users.session_user(session) is None and users.token_user(token) is None
    users.set_disabled("wang.li", False)
    assert users.token_user(token) == user  # tokens survive; sessions ended for good
    assert users.session_user(session) is None
    assert users.authenticate("wang.li", PASSWORD) == user


def test_lockout_after_failures_and_reopening_after_the_lockout(
    users: UserDirectory, clock: Clock
) -> None:
    for _ in range(MAX_FAILURES):
        assert users.authenticate("wang.li", "wrong password!") is None
    assert users.authenticate("wang.li", PASSWORD) is None  # locked: even the right one
    (account,) = [a for a in users.accounts() if a.username == "wang.li"]
    assert account.locked_until == pytest.approx(clock() + LOCKOUT_S)
    assert users.authenticate("zhao", PASSWORD + "!") is not None  # per user
    clock.advance(LOCKOUT_S - 1)
    assert users.authenticate("wang.li", PASSWORD) is None
    clock.advance(1)
    assert users.authenticate("wang.li", PASSWORD) is not None


def test_a_good_login_resets_the_failure_count(users: UserDirectory) -> None:
    for _ in range(3):
        for _ in range(MAX_FAILURES - 1):
            assert users.authenticate("wang.li", "wrong password!") is None
        assert users.authenticate("wang.li", PASSWORD) is not None


def test_a_new_password_lifts_the_lockout_and_ends_sessions(users: UserDirectory) -> None:
    session = users.create_session(User("wang.li", Role.OPERATOR))
    for _ in range(MAX_FAILURES):
        users.authenticate("wang.li", "wrong password!")
    users.set_password("wang.li", "a brand new passphrase")
    assert users.session_user(session) is None
    assert users.authenticate("wang.li", PASSWORD) is None
    assert users.authenticate("wang.li", "a brand new passphrase") is not None


def test_parallel_guesses_cannot_exceed_the_limit(
    users: UserDirectory, hasher: CountingHasher, clock: Clock
) -> None:
    # MAX_FAILURES wrong guesses are held inside the hash check: while they are in
    # flight every further attempt is refused, even with the right password.
    hasher.hold.clear()
    guesses = [threading.Thread(target=users.authenticate, args=("wang.li", f"guess {i:08}"))
               for i in range(MAX_FAILURES)]  # fmt: skip
    for g in guesses:
        g.start()
    for _ in guesses:
        assert hasher.waiting.acquire(timeout=10)
    assert users.authenticate("wang.li", PASSWORD) is None
    hasher.hold.set()
    for g in guesses:
        g.join(10)
    assert users.authenticate("wang.li", PASSWORD) is None  # they failed: locked out
    clock.advance(LOCKOUT_S)
    assert users.authenticate("wang.li", PASSWORD) is not None


# --- sessions --------------------------------------------------------------------------------


def test_sessions_slide_while_used_and_expire_when_not(users: UserDirectory, clock: Clock) -> None:
    user = User("wang.li", Role.OPERATOR)
    token = users.create_session(user, ttl_s=100)
    assert token.startswith(SESSION_PREFIX) and len(token) >= len(SESSION_PREFIX) + 43
    for _ in range(5):  # 450 s in all, never 100 s idle
        clock.advance(90)
        assert users.session_user(token) == user
    clock.advance(100)
    assert users.session_user(token) is None
    clock.advance(-100)
    assert users.session_user(token) is None  # expired sessions are gone, not just hidden


def test_sessions_end_at_their_maximum_age_whatever_the_use(clock: Clock) -> None:
    with UserDirectory(":memory:", clock=clock, hasher=CountingHasher(), max_session_s=250) as d:
        user = d.add_user("wang.li", PASSWORD, Role.VIEWER)
        token = d.create_session(user, ttl_s=100)
        for _ in range(4):
            clock.advance(60)
            assert d.session_user(token) == user
        clock.advance(20)  # 260 s after login
        assert d.session_user(token) is None


def test_logout_ends_only_that_session(users: UserDirectory) -> None:
    user = User("wang.li", Role.OPERATOR)
    a, b = users.create_session(user), users.create_session(user)
    assert a != b
    users.end_session(a)
    users.end_session(a)  # again: nothing to do
    assert users.session_user(a) is None and users.session_user(b) == user


def test_a_role_change_applies_to_live_sessions_and_tokens(users: UserDirectory) -> None:
    session = users.create_session(User("wang.li", Role.OPERATOR))
    token = users.create_token("wang.li", "script")
    users.set_role("wang.li", Role.VIEWER)
    assert users.session_user(session) == User("wang.li", Role.VIEWER)
    assert users.token_user(token) == User("wang.li", Role.VIEWER)


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf")])
def test_bad_session_lifetimes_are_refused(users: UserDirectory, ttl: float) -> None:
    with pytest.raises(AuthError, match="ttl_s"):
        users.create_session(User("wang.li", Role.OPERATOR), ttl_s=ttl)


# --- API tokens ------------------------------------------------------------------------------


def test_tokens_work_until_revoked_or_expired(users: UserDirectory, clock: Clock) -> None:
    forever = users.create_token("wang.li", "ci")
    hour = users.create_token("wang.li", "one hour", ttl_s=3600)
    assert forever.startswith(API_TOKEN_PREFIX)
    assert users.token_user(forever) == users.token_user(hour) == User("wang.li", Role.OPERATOR)
    clock.advance(3600)
    assert users.token_user(hour) is None and users.token_user(forever) is not None
    users.revoke_token("wang.li", "ci")
    assert users.token_user(forever) is None
    with pytest.raises(AuthError, match="no token named 'ci'"):
        users.revoke_token("wang.li", "ci")
    with pytest.raises(AuthError, match="no user 'nobody'"):
        users.revoke_token("nobody", "ci")


def test_token_names_are_per_user_and_unique(users: UserDirectory) -> None:
    users.create_token("wang.li", "ci")
    users.create_token("zhao", "ci")
    with pytest.raises(AuthError, match="already has a token named 'ci'"):
        users.create_token("wang.li", "ci")
    with pytest.raises(AuthError, match="invalid token name"):
        users.create_token("wang.li", "")
    with pytest.raises(AuthError, match="no user"):
        users.create_token("nobody", "x")
    (account,) = [a for a in users.accounts() if a.username == "wang.li"]
    assert account.tokens == ("ci",)
    users.revoke_token("zhao", "ci")
    assert users.token_user(users.create_token("zhao", "ci")) is not None  # name is free again


def test_sessions_and_tokens_are_not_interchangeable(users: UserDirectory) -> None:
    session = users.create_session(User("wang.li", Role.OPERATOR))
    token = users.create_token("wang.li", "ci")
    assert users.token_user(session) is None and users.session_user(token) is None
    assert users.bearer_user(session) == users.bearer_user(token) == User("wang.li", Role.OPERATOR)


@settings(max_examples=200, deadline=None, suppress_health_check=[REUSED])
@given(st.one_of(
    st.text(max_size=200),
    st.text(max_size=60).map(lambda s: SESSION_PREFIX + s),
    st.text(max_size=60).map(lambda s: API_TOKEN_PREFIX + s),
    st.none(), st.integers(), st.binary(),
))  # fmt: skip
def test_forged_and_malformed_tokens_find_nobody(populated: UserDirectory, forged: object) -> None:
    users = populated
    for lookup in (users.session_user, users.token_user, users.bearer_user):
        assert lookup(forged) is None  # type: ignore[arg-type]


# --- the first admin -------------------------------------------------------------------------


def test_first_start_creates_an_admin_with_a_generated_password_once(tmp_path: Path) -> None:
    path = tmp_path / "users.sqlite"
    with UserDirectory(path, hasher=CountingHasher()) as d:
        password = d.ensure_admin()
        assert password is not None and len(password) >= MIN_PASSWORD_LENGTH
        assert d.authenticate("admin", password) == User("admin", Role.ADMIN)
        assert d.ensure_admin() is None
    with UserDirectory(path, hasher=CountingHasher()) as d:
        assert d.ensure_admin() is None  # a later start
        assert d.authenticate("admin", password) is not None
    with UserDirectory(":memory:", hasher=CountingHasher()) as other:
        assert other.ensure_admin() != password  # generated, not a default


def test_no_admin_is_created_where_users_exist(users: UserDirectory) -> None:
    assert users.ensure_admin() is None
    assert [u.username for u in users.users()] == ["wang.li", "zhao"]


def test_the_last_enabled_admin_cannot_be_demoted_or_disabled(users: UserDirectory) -> None:
    with pytest.raises(AuthError, match="only enabled admin"):
        users.set_role("zhao", Role.MAINTAINER)
    with pytest.raises(AuthError, match="only enabled admin"):
        users.set_disabled("zhao", True)
    users.set_role("wang.li", Role.ADMIN)
    users.set_role("zhao", Role.MAINTAINER)
    assert users.users() == [User("wang.li", Role.ADMIN), User("zhao", Role.MAINTAINER)]


# --- validation ------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.from_regex(USERNAME_PATTERN, fullmatch=True))
def test_every_valid_username_can_be_added(username: str) -> None:
    with UserDirectory(":memory:", hasher=CountingHasher()) as d:
        assert d.add_user(username, PASSWORD, Role.VIEWER) == User(username, Role.VIEWER)
        assert d.authenticate(username, PASSWORD) == User(username, Role.VIEWER)


@settings(max_examples=200, deadline=None, suppress_health_check=[REUSED])
@given(st.text(max_size=40).filter(lambda s: not re.fullmatch(USERNAME_PATTERN, s)))
def test_invalid_usernames_are_refused_naming_the_name(users: UserDirectory, name: str) -> None:
    with pytest.raises(AuthError, match="invalid username") as err:
        users.add_user(name, PASSWORD, Role.VIEWER)
    assert repr(name) in str(err.value)


@settings(max_examples=50, deadline=None, suppress_health_check=[REUSED])
@given(st.text(max_size=MIN_PASSWORD_LENGTH - 1))
def test_short_passwords_are_refused(users: UserDirectory, password: str) -> None:
    with pytest.raises(AuthError, match="password too short"):
        users.add_user("new.user", password, Role.VIEWER)
    with pytest.raises(AuthError, match="password too short"):
        users.set_password("wang.li", password)


def test_other_bad_requests_say_what_is_wrong(users: UserDirectory) -> None:
    with pytest.raises(AuthError, match="already exists"):
        users.add_user("wang.li", PASSWORD, Role.VIEWER)
    with pytest.raises(AuthError, match="only whitespace"):
        users.add_user("new.user", " " * 20, Role.VIEWER)
    with pytest.raises(AuthError, match="no user 'nobody'"):
        users.set_password("nobody", PASSWORD)
    with pytest.raises(AuthError, match="unknown role 'superuser'.*viewer, operator"):
        users.set_role("wang.li", "superuser")  # type: ignore[arg-type]


def test_roles_are_ordered_and_parsed() -> None:
    assert Role.VIEWER < Role.OPERATOR < Role.MAINTAINER < Role.ADMIN
    assert [Role.parse(r.name.lower()) for r in Role] == list(Role)
    assert Role.parse(" Operator ") is Role.OPERATOR


def test_an_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(AuthError, match="cannot create the user directory"):
        UserDirectory(blocker / "users.sqlite")


# --- the API: who may ask -------------------------------------------------------------------

VIEWER_PW, OPERATOR_PW, ADMIN_PW = "viewer password 1", "operator password 2", "admin password 3"


@dataclass
class Api:
    client: TestClient
    users: UserDirectory
    clock: Clock
    alarm_id: int

    def login(self, username: str, password: str) -> str:
        r = self.client.post("/api/login", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        self.client.cookies.clear()  # tests pass credentials explicitly
        return r.json()["token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def api(tmp_path: Path, clock: Clock) -> Iterator[Api]:
    store = DuckDBStore(tmp_path / "hub.duckdb")
    alarm = Alarm(AlarmCode.SPINDLE_OVERLOAD, Severity.FAULT, "spindle load 130 %", "spindle", 5.0)
    alarm_id = store.write_alarm("harbin-1", alarm)
    users = UserDirectory(":memory:", clock=clock, hasher=CountingHasher(),
                          max_failures=MAX_FAILURES, lockout_s=LOCKOUT_S)  # fmt: skip
    users.add_user("viewer", VIEWER_PW, Role.VIEWER)
    users.add_user("operator", OPERATOR_PW, Role.OPERATOR)
    users.add_user("boss", ADMIN_PW, Role.ADMIN)
    # The per-address login limit has its own test; here it would only get in the way.
    app = create_api(store, LiveSnapshot, users, login_limit=LoginLimit(attempts=100_000))
    with TestClient(app) as client:
        yield Api(client, users, clock, alarm_id)
    users.close()
    store.close()


def protected_requests(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every HTTP route under /api except login and logout, with
    path parameters filled in."""
    out = []
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.path.startswith("/api/"):
            continue
        if route.path not in ("/api/login", "/api/logout"):
            path = re.sub(r"\{[^}]+\}", "1", route.path)
            out += [(m, path) for m in sorted(route.methods)]
    return out


def test_every_api_route_needs_a_login(api: Api) -> None:
    requests = protected_requests(api.client.app)  # type: ignore[arg-type]
    assert len(requests) >= 8  # the data routes are all there
    for method, path in requests:
        r = api.client.request(method, path, json={})
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.headers["www-authenticate"] == "Bearer"
    with pytest.raises(WebSocketDisconnect) as closed, api.client.websocket_connect("/api/ws/live"):
        pass
    assert closed.value.code == 1008


def test_health_docs_and_login_stay_open(api: Api) -> None:
    assert api.client.get("/healthz").status_code == 200
    assert api.client.get("/docs").status_code == 200
    assert api.client.get("/openapi.json").status_code == 200
    assert api.client.post("/api/logout").status_code == 204


def test_login_sets_a_strict_http_only_cookie_that_works(api: Api) -> None:
    r = api.client.post("/api/login", json={"username": "operator", "password": OPERATOR_PW})
    body = r.raise_for_status().json()
    assert body["username"] == "operator" and body["role"] == "operator"
    cookie = r.headers["set-cookie"]
    assert f"{SESSION_COOKIE}={body['token']}" in cookie
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert api.client.get("/api/me").json() == {"username": "operator", "role": "operator"}
    assert api.client.get("/api/machines").status_code == 200
    with api.client.websocket_connect("/api/ws/live?interval_ms=20") as ws:
        assert "machines" in ws.receive_json()
    assert api.client.post("/api/logout").status_code == 204
    assert api.client.get("/api/me").status_code == 401
    assert api.users.session_user(body["token"]) is None


def test_bearer_session_and_api_tokens_work_and_end(api: Api) -> None:
    session = api.login("viewer", VIEWER_PW)
    token = api.users.create_token("operator", "script")
    assert api.client.get("/api/me", headers=bearer(session)).json()["username"] == "viewer"
    assert api.client.get("/api/me", headers=bearer(token)).json()["username"] == "operator"
    with api.client.websocket_connect("/api/ws/live", headers=bearer(token)) as ws:
        assert "machines" in ws.receive_json()
    api.client.post("/api/logout", headers=bearer(session))
    api.users.revoke_token("operator", "script")
    for gone in (session, token):
        assert api.client.get("/api/machines", headers=bearer(gone)).status_code == 401


@pytest.mark.parametrize("password", [OPERATOR_PW + "x", "", VIEWER_PW])
@pytest.mark.parametrize("username", ["operator", "nobody", "OPERATOR"])
def test_wrong_logins_get_the_same_401(api: Api, username: str, password: str) -> None:
    r = api.client.post("/api/login", json={"username": username, "password": password})
    assert r.status_code == 401 and r.json() == {"detail": "wrong username or password"}
    assert SESSION_COOKIE not in r.headers.get("set-cookie", "")


def test_login_locks_out_after_failures(api: Api) -> None:
    wrong = {"username": "operator", "password": "not the password"}
    for _ in range(MAX_FAILURES):
        assert api.client.post("/api/login", json=wrong).status_code == 401
    right = {"username": "operator", "password": OPERATOR_PW}
    assert api.client.post("/api/login", json=right).status_code == 401
    api.clock.advance(LOCKOUT_S)
    assert api.client.post("/api/login", json=right).status_code == 200


def test_logins_per_client_address_are_limited(tmp_path: Path, clock: Clock) -> None:
    # One address trying one password on many users: the per-user lockout never trips.
    users = UserDirectory(":memory:", hasher=CountingHasher())
    store = DuckDBStore(tmp_path / "hub.duckdb")
    limit = LoginLimit(attempts=4, window_s=60, clock=clock)
    client = TestClient(create_api(store, LiveSnapshot, users, login_limit=limit))
    for i in range(4):
        r = client.post("/api/login", json={"username": f"user{i}", "password": "Summer2026!!"})
        assert r.status_code == 401
        clock.advance(10)
    r = client.post("/api/login", json={"username": "user9", "password": "Summer2026!!"})
    assert r.status_code == 429 and r.headers["retry-after"] == "20"
    assert "too many login attempts" in r.json()["detail"]
    clock.advance(20)  # the first attempt has left the window
    assert client.post("/api/login", json={"username": "x1", "password": "y"}).status_code == 401
    assert limit.retry_after("192.0.2.7") == 0  # another address is not held up
    store.close()


def test_the_login_limit_forgets_the_oldest_addresses(clock: Clock) -> None:
    limit = LoginLimit(attempts=1, window_s=60, max_clients=100, clock=clock)
    assert limit.retry_after("10.0.0.1") == 0 and limit.retry_after("10.0.0.1") == 60
    for i in range(100):
        limit.retry_after(f"10.1.{i // 256}.{i % 256}")
    assert limit.retry_after("10.0.0.1") == 0  # forgotten, not kept without bound


@pytest.mark.parametrize(
    "body",
    [{}, {"username": "operator"}, {"username": "operator", "password": "p" * 5000},
     {"username": "operator", "password": OPERATOR_PW, "role": "admin"}],
)  # fmt: skip
def test_malformed_login_bodies_are_422(api: Api, body: dict) -> None:
    assert api.client.post("/api/login", json=body).status_code == 422


def bypass_headers(api: Api) -> dict[str, dict[str, str]]:
    """Requests that must not get in, by what is wrong with them."""
    user = User("operator", Role.OPERATOR)
    expired = api.users.create_session(user, ttl_s=10)
    api_token = api.users.create_token("operator", "script")
    disabled = api.users.create_token("viewer", "old")
    api.users.set_disabled("viewer", True)
    valid = api.users.create_session(user)
    api.clock.advance(11)
    forged = SESSION_PREFIX + secrets.token_urlsafe(32)
    return {
        "no credentials": {},
        "empty bearer": {"Authorization": "Bearer "},
        "scheme only": {"Authorization": "Bearer"},
        "basic auth": {"Authorization": "Basic b3BlcmF0b3I6b3BlcmF0b3IgcGFzc3dvcmQgMg=="},
        "garbage": {"Authorization": "Bearer \x7f\x01 nonsense"},
        "expired session": bearer(expired),
        "forged session": bearer(forged),
        "forged api token": bearer(API_TOKEN_PREFIX + secrets.token_urlsafe(32)),
        "tampered session": bearer(valid[:-2] + ("AA" if valid[-2:] != "AA" else "BB")),
        "disabled user's token": bearer(disabled),
        "password as token": bearer(OPERATOR_PW),
        "api token as cookie": {"Cookie": f"{SESSION_COOKIE}={api_token}"},
        "forged cookie": {"Cookie": f"{SESSION_COOKIE}={forged}"},
        "bad header beats a good cookie": {"Authorization": "Bearer nope",
                                           "Cookie": f"{SESSION_COOKIE}={valid}"},
    }  # fmt: skip


def test_bypass_attempts_are_all_401(api: Api) -> None:
    for why, headers in bypass_headers(api).items():
        for path in ("/api/machines", "/api/me", "/api/alarms", "/api/users"):
            r = api.client.get(path, headers=headers)
            assert r.status_code == 401, (why, path, r.status_code)
        with pytest.raises(WebSocketDisconnect), \
                api.client.websocket_connect("/api/ws/live", headers=headers):  # fmt: skip
            pass


_finite = st.floats(allow_nan=False, allow_infinity=False)  # what JSON can carry
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | _finite | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=3),
    max_leaves=8,
)  # fmt: skip
_header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)


@settings(max_examples=150, deadline=None, suppress_health_check=[REUSED])
@given(
    body=st.one_of(_json, st.fixed_dictionaries({"username": _json, "password": _json})),
    authorization=st.one_of(st.none(), _header_text,
                            _header_text.map(lambda t: "Bearer " + t),
                            _header_text.map(lambda t: f"Bearer {SESSION_PREFIX}{t}"),
                            _header_text.map(lambda t: f"Bearer {API_TOKEN_PREFIX}{t}")),
    cookie=st.one_of(st.none(), _header_text),
)  # fmt: skip
def test_arbitrary_logins_and_credentials_never_get_in_or_crash(
    api: Api, body: object, authorization: str | None, cookie: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    if cookie is not None:
        headers["Cookie"] = f"{SESSION_COOKIE}={cookie}"
    r = api.client.post("/api/login", json=body)
    assert r.status_code in (401, 422), (body, r.status_code)
    r = api.client.get("/api/me", headers=headers)
    assert r.status_code == 401, (headers, r.status_code)


@pytest.mark.parametrize("path", ["/api/machines/", "/api//machines", "/api/./machines",
                                  "/api/login/../machines", "/api/%6dachines", "/api"])  # fmt: skip
def test_path_variants_do_not_slip_past_the_gate(api: Api, path: str) -> None:
    r = api.client.get(path, follow_redirects=True)
    assert r.status_code in (401, 404), (path, r.status_code)


def test_roles_are_checked_per_route(api: Api) -> None:
    viewer, admin = api.login("viewer", VIEWER_PW), api.login("boss", ADMIN_PW)
    operator = api.login("operator", OPERATOR_PW)
    for token in (viewer, operator):
        r = api.client.get("/api/users", headers=bearer(token))
        assert r.status_code == 403 and "this needs admin" in r.json()["detail"]
    listed = api.client.get("/api/users", headers=bearer(admin)).raise_for_status().json()
    assert [(u["username"], u["role"]) for u in listed] == [
        ("boss", "admin"), ("operator", "operator"), ("viewer", "viewer")]  # fmt: skip
    # Any logged-in user may acknowledge an alarm; the record names them.
    r = api.client.post(f"/api/alarms/{api.alarm_id}/ack", json={"comment": "seen"},
                        headers=bearer(viewer))  # fmt: skip
    assert r.raise_for_status().json()["acknowledged_by"] == "viewer"
    # A promotion applies to the live session at once.
    api.users.set_role("viewer", Role.ADMIN)
    assert api.client.get("/api/users", headers=bearer(viewer)).status_code == 200


def test_require_role_guards_routes_other_modules_add(api: Api) -> None:
    app = cast(FastAPI, api.client.app)

    @app.post("/control/feed-hold")
    def feed_hold(user: User = Depends(require_role(Role.OPERATOR))) -> dict[str, str]:
        return {"by": user.username}

    viewer, operator = api.login("viewer", VIEWER_PW), api.login("operator", OPERATOR_PW)
    assert api.client.post("/control/feed-hold").status_code == 401  # outside /api: the dependency
    assert api.client.post("/control/feed-hold", headers=bearer(viewer)).status_code == 403
    r = api.client.post("/control/feed-hold", headers=bearer(operator))
    assert r.json() == {"by": "operator"}


def test_a_failing_user_directory_is_503_not_500(api: Api) -> None:
    token = api.users.create_token("operator", "script")
    api.users.close()  # as if its file had gone bad
    r = api.client.get("/api/machines", headers=bearer(token))
    assert r.status_code == 503 and "user directory failed" in r.json()["detail"]
    r = api.client.post("/api/login", json={"username": "operator", "password": OPERATOR_PW})
    assert r.status_code == 503 and "user directory failed" in r.json()["detail"]
    with pytest.raises(WebSocketDisconnect), \
            api.client.websocket_connect("/api/ws/live", headers=bearer(token)):  # fmt: skip
        pass


def test_without_a_user_directory_nobody_gets_in(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "hub.duckdb")
    client = TestClient(create_api(store, LiveSnapshot))
    login = client.post("/api/login", json={"username": "admin", "password": "x" * 12})
    assert login.status_code == 401
    for method, path in protected_requests(client.app):  # type: ignore[arg-type]
        assert client.request(method, path).status_code == 401
    assert client.get("/healthz").status_code == 200
    store.close()


# --- over a real HTTP server ------------------------------------------------------------------


@pytest.fixture
def served(api: Api) -> Iterator[str]:
    """The API of ``api`` behind a real uvicorn on a free port; its base URL."""
    server = uvicorn.Server(uvicorn.Config(api.client.app, host="127.0.0.1", port=0,
                                           log_level="warning", lifespan="off"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_a_browser_like_client_over_http_and_websocket(api: Api, served: str) -> None:
    with httpx.Client(base_url=f"http://{served}") as browser:
        assert browser.get("/api/machines").status_code == 401
        r = browser.post("/api/login", json={"username": "viewer", "password": VIEWER_PW})
        assert r.status_code == 200 and browser.cookies.get(SESSION_COOKIE) == r.json()["token"]
        assert "secure" not in r.headers["set-cookie"].lower()  # plain http on loopback
        assert browser.get("/api/machines").status_code == 200  # the cookie is sent back
        cookie = f"{SESSION_COOKIE}={r.json()['token']}"
        browser.post("/api/logout")
        assert browser.get("/api/machines").status_code == 401
    url = f"ws://{served}/api/ws/live?interval_ms=20"
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(url, open_timeout=10).close()
    assert refused.value.response.status_code == 403  # refused at the handshake
    with pytest.raises(InvalidStatus):
        ws_connect(url, additional_headers={"Cookie": cookie}, open_timeout=10).close()  # ended
    token = api.users.create_token("operator", "dashboard")
    with ws_connect(url, additional_headers=bearer(token), open_timeout=10) as ws:
        assert "machines" in json.loads(ws.recv(timeout=10))
