"""Real `workrate` processes for the multi-process tests and benchmarks: free loopback ports (free_port, the
one every test uses), a fresh PostgreSQL database per run, one log file per process, and a clean stop.
"""
from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
WORKRATE = Path(sys.executable).with_name("workrate")
PG_SERVER = os.environ.get("WORKRATE_TEST_PG_SERVER", "postgresql://postgres@127.0.0.1:5432")
STOP_GRACE_SECONDS = 15


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> object:
    """Polls condition() until it returns something truthy (returned), or raises AssertionError naming `what`."""
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------------
# PostgreSQL


def postgres_unavailable_reason(server: str = PG_SERVER) -> str:
    """'' when a PostgreSQL server answers at `server` (user postgres, trust), else why not."""
    try:
        import psycopg2
    except ImportError:
        return "psycopg2 is not installed"
    try:
        psycopg2.connect(f"{server}/postgres", connect_timeout=3).close()
    except Exception as e:  # any failure to connect means: no server for us
        why = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
        return f"no PostgreSQL answers at {server}: {why}"
    return ""


def _admin(server: str, sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(f"{server}/postgres", connect_timeout=5)
    try:
        conn.autocommit = True
        conn.cursor().execute(sql)
    finally:
        conn.close()


@contextmanager
def fresh_postgres_database(prefix: str = "wr_test", server: str = PG_SERVER) -> Iterator[str]:
    """Creates an empty database with a name unique to this run, yields its URL, drops it WITH (FORCE)."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", prefix):
        raise ValueError(f"not a safe database name prefix: {prefix!r}")
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    _admin(server, f'CREATE DATABASE "{name}"')
    try:
        yield f"{server}/{name}"
    finally:
        _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def query(url: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple]:
    """Runs one read-only statement on its own short connection and returns the rows."""
    import psycopg2

    conn = psycopg2.connect(url, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------------
# workrate processes


def base_environment(**settings: str) -> dict[str, str]:
    """os.environ without any WORKRATE_* of the caller, plus the given WORKRATE_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKRATE_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> str:
    """Runs `workrate ARGS` and returns its stdout; raises AssertionError with stderr when it fails."""
    done = subprocess.run([str(WORKRATE), *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"workrate {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


@dataclass
class Proc:
    """One running `workrate ROLE` with its own log file; port is where it listens (0 for a worker)."""

    name: str
    role: str
    popen: subprocess.Popen
    log_path: Path
    port: int = 0
    env: dict[str, str] = field(default_factory=dict, repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_listening(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.name} exited with {self.popen.returncode}:\n{self.log()[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                return False

        wait_until(ready, timeout, f"{self.name} to listen on port {self.port}", interval=0.1)

    def wait_log(self, pattern: str, timeout: float = 60) -> None:
        def seen() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.name} exited with {self.popen.returncode}:\n{self.log()[-3000:]}")
            return re.search(pattern, self.log()) is not None

        wait_until(seen, timeout, f"{self.name} to log {pattern!r}", interval=0.1)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> int | None:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL. Returns the exit status."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.popen.returncode


def start(role: str, env: dict[str, str], log_dir: Path, name: str | None = None, port: int = 0,
          **settings: str) -> Proc:
    """Starts `workrate ROLE` (smtp, web, worker) with env plus `settings`; returns at once (not yet ready).

    For smtp and web, pass the port to listen on (free_port()); it goes into WORKRATE_SMTP_PORT/WEB_PORT.
    """
    name = name or role
    env = dict(env, **settings)
    if role == "smtp":
        env["WORKRATE_SMTP_PORT"] = str(port)
    elif role == "web":
        env["WORKRATE_WEB_PORT"] = str(port)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log = log_path.open("ab")
    popen = subprocess.Popen([str(WORKRATE), role], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    return Proc(name=name, role=role, popen=popen, log_path=log_path, port=port, env=env, _log=log)


def stop_all(procs: list[Proc]) -> None:
    """SIGTERM to every process first (so they stop in parallel), then waits for each."""
    for p in procs:
        if p.alive():
            p.popen.send_signal(signal.SIGTERM)
    for p in procs:
        p.stop()
