"""What the web benchmarks share: a temporary data folder (SQLite) or an empty PostgreSQL database, the
settings for it, real `workrate web` processes on loopback ports, signed-in clients and timings.

    with Bench("wr-bench-web-", args.database_url) as b:
        generate(b.settings, ...)          # write the data with the storage layer
        web = b.start_web(WORKRATE_LIVE_STREAM_SECONDS="600")
        ...                                # measure against web.port
    # every process stopped, the data folder removed
"""
from __future__ import annotations

import http.client
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from procs import Proc, base_environment, free_port, start  # noqa: E402

from config import Settings  # noqa: E402


def say(text: str) -> None:
    print(text, flush=True)


class Bench:
    """A benchmark's data and processes: `settings` (for the storage layer in this process), start_web()."""

    def __init__(self, prefix: str, database_url: str = "") -> None:
        self.data = Path(tempfile.mkdtemp(prefix=prefix))
        self.secret = prefix + secrets.token_hex(16)
        port = free_port()
        self.settings = Settings(data_dir=self.data, database_url=database_url, secret_key=self.secret,
                                 reply_domain="reply.bench.test", web_port=port,
                                 base_url=f"http://127.0.0.1:{port}")
        self.procs: list[Proc] = []

    @property
    def db_name(self) -> str:
        return "PostgreSQL" if self.settings.is_postgres else "SQLite"

    def environment(self, **settings: str) -> dict[str, str]:
        """The environment of a `workrate` process on this benchmark's database, plus `settings`."""
        s = self.settings
        return base_environment(WORKRATE_DATABASE_URL=s.effective_database_url, WORKRATE_DATA_DIR=str(self.data),
                                WORKRATE_SECRET_KEY=self.secret, WORKRATE_REPLY_DOMAIN=s.reply_domain,
                                WORKRATE_BASE_URL=s.effective_base_url, WORKRATE_LOG_LEVEL="WARNING", **settings)

    def start_web(self, port: int = 0, name: str = "web", **settings: str) -> Proc:
        """Starts `workrate web` (on settings.web_port the first time, unless given) and waits until it listens."""
        port = port or (self.settings.web_port if not self.procs else free_port())
        proc = start("web", self.environment(**settings), self.data / "logs", name, port=port)
        self.procs.append(proc)
        proc.wait_listening(60)
        return proc

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        for proc in self.procs:
            proc.stop()
        shutil.rmtree(self.data, ignore_errors=True)


def session_cookies(secret: str, people: list[tuple[int, str]]) -> list[str]:
    """A session cookie for each (user id, role): a server-side session row, as the sign-in form makes
    (all in one transaction), and its cookie, signed with Flask's own session interface. The storage
    layer must be bound to the benchmark's database."""
    import datetime as dt

    from flask import Flask

    from storage import db
    from storage.models import User
    from storage.sessions import PASSWORD, start_session

    app = Flask("bench")
    app.secret_key = secret
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    cookies = []
    with db.database.connection_context(), db.database.atomic():
        for user_id, role in people:
            session_secret, _ = start_session(User.get_by_id(user_id), PASSWORD, dt.timedelta(days=1))
            cookies.append("workrate_session=" + serializer.dumps({"sid": session_secret, "user_id": user_id,
                                                                   "role": role}))
    return cookies


class Client:
    """Keep-alive HTTP/1.1 client for one signed-in person."""

    def __init__(self, port: int, cookie: str) -> None:
        self.port = port
        self.cookie = cookie
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str) -> float:
        """Milliseconds from request to the last byte of a 200 response."""
        t0 = time.perf_counter()
        try:
            self.conn.request("GET", path, headers={"Cookie": self.cookie})
            resp = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError):
            # The server closed the idle keep-alive connection meanwhile: once more on a new one.
            self.conn.close()
            t0 = time.perf_counter()
            self.conn.request("GET", path, headers={"Cookie": self.cookie})
            resp = self.conn.getresponse()
        body = resp.read()
        ms = (time.perf_counter() - t0) * 1000
        if resp.status != 200:
            raise SystemExit(f"GET {path}: {resp.status}\n{body[:500]!r}")
        return ms


def pct(samples: list[float], p: float) -> float:
    data = sorted(samples)
    return data[min(len(data) - 1, int(p / 100 * len(data)))]


@dataclass
class Timing:
    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def pct(self, p: float) -> float:
        return pct(self.samples, p)

    def __str__(self) -> str:
        return f"median {self.median:8.2f} ms  p90 {self.pct(90):8.2f} ms  (n={len(self.samples)})"


def measure(fn: Callable[[], float], n: int, warmup: int = 3) -> Timing:
    for _ in range(warmup):
        fn()
    return Timing([fn() for _ in range(n)])


def measure_interleaved(fns: dict[str, Callable[[], float]], n: int, warmup: int = 3) -> dict[str, Timing]:
    """Like measure(), taking turns between the functions, so that a change in machine load hits all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(n):
        for name, fn in fns.items():
            samples[name].append(fn())
    return {name: Timing(v) for name, v in samples.items()}


@dataclass
class PairedRatio:
    """Page loads of A and B taken in turns (A, B, B, A, …), as the ratio A/B: the median of the per-block
    ratios of medians, with their spread, so a drift in machine load moves both sides of every block."""

    a: list[float]
    b: list[float]
    block_ratios: list[float]

    @property
    def ratio(self) -> float:
        return statistics.median(self.block_ratios)

    def __str__(self) -> str:
        r = sorted(self.block_ratios)
        return (f"{self.ratio:.2f}× (blocks: min {r[0]:.2f}, quartiles {pct(r, 25):.2f}–{pct(r, 75):.2f}, "
                f"max {r[-1]:.2f}; {len(r)} blocks; medians {statistics.median(self.a):.1f} vs "
                f"{statistics.median(self.b):.1f} ms, n={len(self.a)} each)")


def paired_ratio(a: Callable[[], float], b: Callable[[], float], blocks: int, per_block: int,
                 warmup: int = 5) -> PairedRatio:
    for _ in range(warmup):
        a()
        b()
    all_a: list[float] = []
    all_b: list[float] = []
    ratios = []
    for _ in range(blocks):
        block_a: list[float] = []
        block_b: list[float] = []
        for i in range(per_block):
            first, second = (a, b) if i % 2 == 0 else (b, a)  # neither side always goes first
            x, y = first(), second()
            block_a.append(x if first is a else y)
            block_b.append(y if first is a else x)
        ratios.append(statistics.median(block_a) / statistics.median(block_b))
        all_a += block_a
        all_b += block_b
    return PairedRatio(all_a, all_b, ratios)
