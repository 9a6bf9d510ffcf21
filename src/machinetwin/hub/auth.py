"""The hub's users: roles, argon2id passwords, sessions and API tokens, in SQLite.

``UserDirectory(path)`` keeps everything in one SQLite file (WAL) next to the hub's
store (``users_path_for(store)``); ``":memory:"`` gives a throwaway directory for
tests. What it guarantees, and why:

- Passwords are stored only as argon2id hashes (argon2-cffi's ``PasswordHasher``),
  rehashed on the next good login when the hasher's parameters change.
- Session and API tokens are 256-bit random strings handed out once; the file keeps
  only their SHA-256 (a stolen file gives no usable token, and a fast hash suffices
  because the tokens are random, unlike passwords).
- Sessions expire after ``ttl_s`` without use (sliding: each use renews them, written
  at most every ``renew_every_s`` so reads stay reads) and after ``max_session_s``
  whatever happens. API tokens are named, per user, revocable and may expire.
- Logins are limited per user: ``max_failures`` failed attempts lock the user for
  ``lockout_s``. Attempts reserve their slot before the slow hash check, so parallel
  guesses cannot overrun the limit. An unknown user costs the same hash check as a
  known one (a dummy hash), so timing does not tell which usernames exist.
- Roles and the disabled flag are read on every session or token lookup, so a role
  change or a disabled user takes effect on the next request, also in a running hub
  while ``machinetwin hub user ...`` edits the same file.
- There are no default credentials: ``ensure_admin()`` creates ``admin`` with a
  generated password on the first start and returns it once.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ..errors import MachinetwinError

USERNAME_PATTERN = r"[a-z][a-z0-9._-]{1,31}"
TOKEN_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._ -]{0,63}"
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # bounds the work one login request can ask for
SESSION_PREFIX = "mts_"
API_TOKEN_PREFIX = "mtt_"
TOKEN_BYTES = 32  # 256 bits
MAX_TOKEN_LENGTH = 128  # anything longer is not one of ours: refused before hashing
ADMIN_USERNAME = "admin"

_USERNAME_RE = re.compile(USERNAME_PATTERN)
_TOKEN_NAME_RE = re.compile(TOKEN_NAME_PATTERN)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    pw_hash TEXT NOT NULL,
    role INTEGER NOT NULL CHECK (role BETWEEN 1 AND 4),
    disabled INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    locked_until REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash BLOB PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    created_at REAL NOT NULL,
    ttl_s REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (username);
CREATE TABLE IF NOT EXISTS refused_logins (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    attempts INTEGER NOT NULL  -- unknown or locked-out user: refused whatever the password
);
INSERT OR IGNORE INTO refused_logins VALUES (1, 0);
CREATE TABLE IF NOT EXISTS api_tokens (
    token_hash BLOB PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    name TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    UNIQUE (username, name)
);
"""


class AuthError(MachinetwinError):
    """A user-directory request is invalid (bad name, short password, unknown user…)."""


class Role(IntEnum):
    """What a user may do; each role includes the ones below it."""

    VIEWER = 1
    OPERATOR = 2
    MAINTAINER = 3
    ADMIN = 4

    @classmethod
    def parse(cls, text: str | Role) -> Role:
        """``"operator"`` (any case) → ``Role.OPERATOR``; the error lists the roles."""
        if isinstance(text, Role):
            return text
        try:
            return cls[str(text).strip().upper()]
        except KeyError:
            names = ", ".join(r.name.lower() for r in cls)
            raise AuthError(f"unknown role {text!r}: expected one of {names}") from None


@dataclass(frozen=True)
class User:
    username: str
    role: Role


@dataclass(frozen=True)
class Account:
    """One user as an administrator sees it (``machinetwin hub user list``)."""

    username: str
    role: Role
    disabled: bool
    locked_until: float | None  # wall clock, s; None when not locked
    tokens: tuple[str, ...]  # names of the user's API tokens (expired ones included)


def users_path_for(store: Path | str) -> Path:
    """Where the user directory of the hub whose store is ``store`` lives."""
    return Path(store).resolve().parent / "users.sqlite"


def generate_password() -> str:
    """A random password of 128 bits (22 URL-safe characters)."""
    return secrets.token_urlsafe(16)


def validate_username(username: object) -> str:
    """The username if it is valid; otherwise an :class:`AuthError` saying why."""
    if not isinstance(username, str):
        raise AuthError(f"username must be text, not {type(username).__name__}")
    if not _USERNAME_RE.fullmatch(username):
        raise AuthError(
            f"invalid username {username!r}: 2 to 32 characters, lowercase letters, digits, "
            "'.', '_' or '-', starting with a letter"
        )
    return username


def validate_password(password: object) -> str:
    """The password if it is acceptable; otherwise an :class:`AuthError` saying why."""
    if not isinstance(password, str):
        raise AuthError(f"password must be text, not {type(password).__name__}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(
            f"password too short: {len(password)} characters, at least {MIN_PASSWORD_LENGTH}"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AuthError(f"password too long: at most {MAX_PASSWORD_LENGTH} characters")
    if not password.strip():
        raise AuthError("password must not be only whitespace")
    return password


def validate_token_name(name: object) -> str:
    if not isinstance(name, str) or not _TOKEN_NAME_RE.fullmatch(name):
        raise AuthError(
            f"invalid token name {name!r}: 1 to 64 characters, letters, digits, space, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    return name


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(TOKEN_BYTES)


def _plausible_token(token: object, prefix: str) -> bool:
    """Cheap shape check before any lookup: wrong type, prefix or length is no token."""
    return isinstance(token, str) and token.startswith(prefix) and len(token) <= MAX_TOKEN_LENGTH


def _check_ttl(ttl_s: float, what: str) -> float:
    if not isinstance(ttl_s, int | float) or not math.isfinite(ttl_s) or ttl_s <= 0:
        raise AuthError(f"{what} must be a positive number of seconds, got {ttl_s!r}")
    return float(ttl_s)


class UserDirectory:
    """Users, sessions and API tokens of one hub (see the module docstring).

    Thread-safe: one connection behind a lock, held only for the SQL and never
    during a password hash, so logins do not serialise the API's token lookups.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Callable[[], float] = time.time,
        hasher: PasswordHasher | None = None,
        max_failures: int = 5,
        lockout_s: float = 300.0,
        max_session_s: float = 7 * 24 * 3600.0,
        renew_every_s: float = 60.0,
    ) -> None:
        if max_failures < 1:
            raise AuthError(f"max_failures must be at least 1, got {max_failures}")
        self._clock = clock
        self._hasher = hasher or PasswordHasher()
        self._max_failures = max_failures
        self._lockout_s = _check_ttl(lockout_s, "lockout_s")
        self._max_session_s = _check_ttl(max_session_s, "max_session_s")
        self._renew_every_s = max(0.0, float(renew_every_s))
        self._lock = threading.RLock()
        self.path = path if str(path) == ":memory:" else Path(path)
        self._db = self._connect()
        # Unknown users are checked against this, so they cost what a real user costs.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    def _connect(self) -> sqlite3.Connection:
        if isinstance(self.path, Path):
            self._create_private(self.path)
        try:
            db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False,
                                 timeout=10.0)  # fmt: skip
            if isinstance(self.path, Path):
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA synchronous=FULL")  # a revoked token stays revoked after a crash
            db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise AuthError(f"{self.path}: cannot open the user directory: {exc}") from None
        return db

    @staticmethod
    def _create_private(path: Path) -> None:
        """Create the file readable by its owner only (SQLite gives its -wal and -shm
        files the same mode), before SQLite creates it with the umask's."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise AuthError(f"{path}: cannot create the user directory: {exc.strerror}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> UserDirectory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken up front so read-modify-write is atomic also
        against another process (the CLI) writing the same file."""
        with self._lock, self._sqlite_errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock, self._sqlite_errors():
            return self._db.execute(sql, args).fetchall()

    @contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        """A failing file (locked too long, disk full, closed) as an AuthError naming it."""
        try:
            yield
        except sqlite3.Error as exc:
            raise AuthError(f"{self.path}: user directory failed: {exc}") from exc

    # --- users -----------------------------------------------------------------------------

    def ensure_admin(self) -> str | None:
        """On the first start (no users at all) create ``admin`` with a generated
        password and return it, for the caller to print once; afterwards None."""
        if self._query("SELECT 1 FROM users LIMIT 1"):
            return None  # checked first: a later start need not pay for a hash
        password = generate_password()
        pw_hash = self._hasher.hash(password)
        with self._tx() as db:
            if db.execute("SELECT 1 FROM users LIMIT 1").fetchone():
                return None  # another process got there first
            self._insert_user(db, ADMIN_USERNAME, pw_hash, Role.ADMIN)
        return password

    def add_user(self, username: str, password: str, role: Role) -> User:
        validate_username(username)
        validate_password(password)
        role = Role.parse(role)
        pw_hash = self._hasher.hash(password)
        with self._tx() as db:
            if self._row(db, username):
                raise AuthError(f"user {username!r} already exists")
            self._insert_user(db, username, pw_hash, role)
        return User(username, role)

    def _insert_user(self, db: sqlite3.Connection, username: str, pw_hash: str, role: Role) -> None:
        db.execute("INSERT INTO users (username, pw_hash, role, created_at) VALUES (?, ?, ?, ?)",
                   (username, pw_hash, int(role), self._clock()))  # fmt: skip

    @staticmethod
    def _row(db: sqlite3.Connection, username: str) -> tuple | None:
        return db.execute(
            "SELECT pw_hash, role, disabled FROM users WHERE username = ?", (username,)
        ).fetchone()

    def _require(self, db: sqlite3.Connection, username: str) -> tuple:
        row = self._row(db, username) if isinstance(username, str) else None
        if row is None:
            raise AuthError(f"no user {username!r}")
        return row

    def set_password(self, username: str, password: str) -> None:
        """New password; the user's sessions end (API tokens stay) and a lockout lifts."""
        validate_password(password)
        pw_hash = self._hasher.hash(password)
        with self._tx() as db:
            self._require(db, username)
            db.execute("UPDATE users SET pw_hash = ?, failures = 0, locked_until = 0 "
                       "WHERE username = ?", (pw_hash, username))  # fmt: skip
            db.execute("DELETE FROM sessions WHERE username = ?", (username,))

    def set_role(self, username: str, role: Role) -> None:
        role = Role.parse(role)
        with self._tx() as db:
            self._require(db, username)
            self._keep_an_admin(db, username, role == Role.ADMIN)
            db.execute("UPDATE users SET role = ? WHERE username = ?", (int(role), username))

    def set_disabled(self, username: str, disabled: bool) -> None:
        """A disabled user cannot log in and their sessions and tokens stop working."""
        with self._tx() as db:
            self._require(db, username)
            self._keep_an_admin(db, username, not disabled)
            db.execute("UPDATE users SET disabled = ? WHERE username = ?",
                       (int(bool(disabled)), username))  # fmt: skip
            if disabled:
                db.execute("DELETE FROM sessions WHERE username = ?", (username,))

    @staticmethod
    def _keep_an_admin(db: sqlite3.Connection, username: str, stays_admin: bool) -> None:
        """Refuse the change that would leave no enabled admin: nobody could fix it
        from the UI afterwards."""
        if stays_admin:
            return
        others = db.execute(
            "SELECT COUNT(*) FROM users WHERE role = ? AND disabled = 0 AND username != ?",
            (int(Role.ADMIN), username),
        ).fetchone()[0]
        was_admin = db.execute(
            "SELECT 1 FROM users WHERE username = ? AND role = ? AND disabled = 0",
            (username, int(Role.ADMIN)),
        ).fetchone()
        if was_admin and others == 0:
            raise AuthError(f"{username!r} is the only enabled admin: make another admin first")

    def users(self) -> list[User]:
        """Every user (enabled or not), by name."""
        rows = self._query("SELECT username, role FROM users ORDER BY username")
        return [User(name, Role(role)) for name, role in rows]

    def accounts(self) -> list[Account]:
        """Every user with their disabled flag, lockout and token names, by name."""
        now = self._clock()
        rows = self._query("SELECT username, role, disabled, locked_until FROM users "
                           "ORDER BY username")  # fmt: skip
        names: dict[str, list[str]] = {}
        for user, name in self._query("SELECT username, name FROM api_tokens ORDER BY name"):
            names.setdefault(user, []).append(name)
        return [
            Account(u, Role(r), bool(d), lock if lock > now else None, tuple(names.get(u, ())))
            for u, r, d, lock in rows
        ]

    # --- logins ----------------------------------------------------------------------------

    def authenticate(self, username: str, password: str) -> User | None:
        """The user if the password is right and they may log in now, else None.

        Unknown, disabled and locked-out users, and wrong passwords, all look the same
        to the caller and cost the same argon2 check."""
        if not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
            password = ""
        valid = isinstance(username, str) and _USERNAME_RE.fullmatch(username) is not None
        reserved = self._reserve_attempt(username) if valid else None
        if reserved is None:
            self._verify(self._dummy_hash, password)
            return None
        attempt, pw_hash, role, disabled, allowed = reserved
        ok = self._verify(pw_hash, password)
        if not allowed:
            return None
        if not ok:
            self._failed(username, attempt)
            return None
        self._succeeded(username, pw_hash, password)
        return None if disabled else User(username, Role(role))

    def _reserve_attempt(self, username: str) -> tuple[int, str, int, bool, bool] | None:
        """Count the attempt before checking it, so that at most ``max_failures``
        guesses are in flight; None for an unknown user. The last item says whether
        the attempt may succeed at all (False while locked out).

        Every path writes once: a commit costs an fsync, which timing would otherwise
        show, telling unknown and locked-out users from the others."""
        now = self._clock()
        with self._tx() as db:
            row = db.execute("SELECT pw_hash, role, disabled, failures, locked_until FROM users "
                             "WHERE username = ?", (username,)).fetchone()  # fmt: skip
            if row is None or row[4] > now or row[3] >= self._max_failures:
                db.execute("UPDATE refused_logins SET attempts = attempts + 1 WHERE id = 1")
            if row is None:
                return None
            pw_hash, role, disabled, failures, locked_until = row
            if locked_until > now or failures >= self._max_failures:
                return failures, pw_hash, role, bool(disabled), False
            db.execute("UPDATE users SET failures = failures + 1 WHERE username = ?", (username,))
        return failures + 1, pw_hash, role, bool(disabled), True

    def _failed(self, username: str, attempt: int) -> None:
        if attempt < self._max_failures:
            return  # already counted when reserved
        until = self._clock() + self._lockout_s
        with self._tx() as db:
            db.execute("UPDATE users SET failures = 0, locked_until = ? WHERE username = ?",
                       (until, username))  # fmt: skip

    def _succeeded(self, username: str, pw_hash: str, password: str) -> None:
        # A changed hasher (stronger parameters) takes effect at the next good login.
        new_hash = self._hasher.hash(password) if self._needs_rehash(pw_hash) else None
        with self._tx() as db:
            db.execute("UPDATE users SET failures = 0 WHERE username = ?", (username,))
            if new_hash is not None:
                db.execute("UPDATE users SET pw_hash = ? WHERE username = ? AND pw_hash = ?",
                           (new_hash, username, pw_hash))  # fmt: skip

    def _needs_rehash(self, pw_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(pw_hash)
        except (InvalidHashError, ValueError):
            return True

    def _verify(self, pw_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(pw_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    # --- sessions --------------------------------------------------------------------------

    def create_session(self, user: User, ttl_s: float = 8 * 3600) -> str:
        """A new session token for ``user`` (shown once; only its hash is kept)."""
        ttl_s = min(_check_ttl(ttl_s, "ttl_s"), self._max_session_s)
        token, now = _new_token(SESSION_PREFIX), self._clock()
        with self._tx() as db:
            if self._row(db, user.username) is None:
                raise AuthError(f"no user {user.username!r}")
            db.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
            db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                       (_token_hash(token), user.username, now, ttl_s, now + ttl_s))  # fmt: skip
        return token

    def session_user(self, token: str) -> User | None:
        """The user of a live session (renewing it), or None: unknown, expired, ended,
        malformed, or the user is disabled."""
        if not _plausible_token(token, SESSION_PREFIX):
            return None
        key, now = _token_hash(token), self._clock()
        row = self._query(
            "SELECT s.username, u.role, u.disabled, s.created_at, s.ttl_s, s.expires_at "
            "FROM sessions s JOIN users u USING (username) WHERE s.token_hash = ?", (key,)
        )  # fmt: skip
        if not row:
            return None
        username, role, disabled, created, ttl_s, expires = row[0]
        if now >= expires:
            self.end_session(token)
            return None
        if disabled:
            return None
        renewed = min(now + ttl_s, created + self._max_session_s)
        if renewed - expires >= min(self._renew_every_s, ttl_s / 10):
            with self._tx() as db:
                db.execute("UPDATE sessions SET expires_at = ? WHERE token_hash = ?",
                           (renewed, key))  # fmt: skip
        return User(username, Role(role))

    def end_session(self, token: str) -> None:
        """Log out; an unknown or malformed token is already ended."""
        if _plausible_token(token, SESSION_PREFIX):
            with self._tx() as db:
                db.execute("DELETE FROM sessions WHERE token_hash = ?", (_token_hash(token),))

    # --- API tokens ------------------------------------------------------------------------

    def create_token(self, username: str, name: str, ttl_s: float | None = None) -> str:
        """A new API token ``name`` of ``username`` (shown once; only its hash is kept)."""
        validate_token_name(name)
        expires = None if ttl_s is None else self._clock() + _check_ttl(ttl_s, "ttl_s")
        token = _new_token(API_TOKEN_PREFIX)
        with self._tx() as db:
            self._require(db, username)
            if db.execute("SELECT 1 FROM api_tokens WHERE username = ? AND name = ?",
                          (username, name)).fetchone():  # fmt: skip
                raise AuthError(f"user {username!r} already has a token named {name!r}")
            db.execute("INSERT INTO api_tokens VALUES (?, ?, ?, ?, ?)",
                       (_token_hash(token), username, name, self._clock(), expires))  # fmt: skip
        return token

    def token_user(self, token: str) -> User | None:
        """The user of a valid API token, or None: unknown, revoked, expired,
        malformed, or the user is disabled."""
        if not _plausible_token(token, API_TOKEN_PREFIX):
            return None
        row = self._query(
            "SELECT t.username, u.role, u.disabled, t.expires_at "
            "FROM api_tokens t JOIN users u USING (username) WHERE t.token_hash = ?",
            (_token_hash(token),),
        )
        if not row:
            return None
        username, role, disabled, expires = row[0]
        if disabled or (expires is not None and self._clock() >= expires):
            return None
        return User(username, Role(role))

    def revoke_token(self, username: str, name: str) -> None:
        with self._tx() as db:
            self._require(db, username)
            gone = db.execute("DELETE FROM api_tokens WHERE username = ? AND name = ?",
                              (username, name)).rowcount  # fmt: skip
        if not gone:
            raise AuthError(f"user {username!r} has no token named {name!r}")

    def bearer_user(self, token: str) -> User | None:
        """The user of a session or an API token (what an ``Authorization: Bearer``
        header may carry)."""
        if _plausible_token(token, SESSION_PREFIX):
            return self.session_user(token)
        return self.token_user(token)
