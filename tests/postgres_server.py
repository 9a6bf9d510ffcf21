"""A private PostgreSQL server for tests and benchmarks: its own data directory and port.

``initdb`` makes a fresh cluster in a temporary directory and ``postgres`` runs it on a
free loopback port (no Unix socket, trust authentication for loopback only), so a test
never touches a system service or another engineer's server. PostgreSQL refuses to run
as root: as root, the cluster belongs to the ``postgres`` system user (the Debian
package creates it) and every command runs as that user.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from machinetwin.hub.broker import free_port

SUPERUSER = "machinetwin"  # the cluster's superuser (initdb -U), not a system account


def find_postgres_bin() -> Path | None:
    """The folder of ``initdb`` and ``postgres``; Debian keeps them off PATH in
    /usr/lib/postgresql/VERSION/bin (the newest version wins)."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parent.parent.name), reverse=True)  # fmt: skip
    return Path(versions[0]).parent if versions else None


def _run_as() -> str | None:
    """The unprivileged user to run PostgreSQL as when we are root, else None."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root and there is no 'postgres' user to run "
                           "PostgreSQL as (install the postgresql package)") from None  # fmt: skip
    return "postgres"


class PostgresServer:
    """``start()``, ``stop()``, ``dsn(dbname)``; one cluster in a temporary folder.

    ``durable=False`` (tests) turns off fsync and synchronous commit: a test server's
    data need not survive a power cut, and fsyncs on a shared disk only slow the suite.
    Benchmarks pass ``durable=True`` to measure what a production server does.
    """

    def __init__(self, durable: bool = False, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_postgres_bin()
        if self.bindir is None:
            raise FileNotFoundError("PostgreSQL (initdb, postgres) is not installed")
        self.user = _run_as()
        self.durable = durable
        # Not under pytest's tmp folder: as root that is 0700 root, out of reach of 'postgres'.
        self.root = Path(tempfile.mkdtemp(prefix="machinetwin-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        if self.user:
            shutil.chown(self.root, self.user, self.user)

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={dbname}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _settings(self) -> list[str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",
            "max_connections": "100",
            "shared_buffers": "128MB",
            "max_wal_size": "1GB",  # fewer checkpoints during a benchmark's burst
            "logging_collector": "off",
        }
        if not self.durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        return [arg for k, v in settings.items() for arg in ("-c", f"{k}={v}")]

    def start(self, timeout_s: float = 30.0) -> None:
        if self.running:
            return
        if not self.data.exists():
            self._initdb()
        log = open(self.log, "ab")  # noqa: SIM115 - owned by the process, closed in stop()
        if self.user:
            shutil.chown(self.log, self.user, self.user)
        self.process = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.data), *self._settings()],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.root,
            user=self.user, start_new_session=True,  # Ctrl-C of a test run is for pytest
        )  # fmt: skip
        log.close()
        self._wait_ready(timeout_s)

    def _initdb(self) -> None:
        got = subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
             "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions",
             "--no-sync"],  # a throwaway cluster: its files need not be on disk now
            capture_output=True, text=True, cwd=self.root, user=self.user,
        )  # fmt: skip
        if got.returncode != 0:
            raise RuntimeError(f"initdb failed ({got.returncode}): {got.stderr.strip()}")

    def _wait_ready(self, timeout_s: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout_s
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}: "
                                   f"{self.log_tail()}")  # fmt: skip
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2) as con:
                    con.execute("SELECT 1")
                return
            except psycopg.OperationalError:  # not listening yet, or still starting up
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"postgres not ready on port {self.port} "
                                       f"in {timeout_s} s: {self.log_tail()}") from None  # fmt: skip
                time.sleep(0.05)

    def create_database(self, name: str) -> str:
        """A fresh database; returns its DSN."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn(), autocommit=True) as con:
            con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn(name)

    def stop(self, immediate: bool = False) -> None:
        """SIGINT (PostgreSQL's fast shutdown: a clean checkpoint), or SIGQUIT (immediate:
        no checkpoint, as a crash; for a cluster about to be deleted); SIGKILL if it does
        not go."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT if immediate else signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def cleanup(self) -> None:
        """Stop and delete the cluster; the thousands of files go in the background
        (seconds on a busy disk that nobody needs to wait for)."""
        self.stop(immediate=True)
        with contextlib.suppress(OSError):
            subprocess.Popen(["rm", "-rf", "--", str(self.root)], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)  # fmt: skip

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def schema_for(key: str) -> str:
    """A schema name of its own for each test store (``key``: its folder, say)."""
    return "t_" + hashlib.sha1(key.encode()).hexdigest()[:20]
