"""Ingest benchmark: our SMTP gateway against a bare aiosmtpd sink, in the same run, as ratios.

usage: python bench/ingest.py [--messages 2000] [--connections 8] [--size 2048] [--attachment 0]
                              [--new-connection] [--database-url URL] [--gateways 1] [--processes 1]
                              [--rounds 1] [--time-limit 120]

Starts a bare aiosmtpd process (handle_DATA answers 250 at once) and our gateway (`workrate smtp`, its own
data folder, a workspace and a client's reply address made through the CLI), sends the same N replies over C
connections to each in turn, and prints msgs/s, p50/p99 DATA→250 latency and server CPU per message (and the
kernel's share of it) for both, and the ratio. A probe process meanwhile sends NOOP every 5 ms on a connection
of its own: its longest round trip bounds how long any handler held the event loop. With --rounds R both are
measured R times, alternately, and the medians are printed: on a shared machine whose speed drifts, each ratio
compares runs made back to back.
Loopback only; bounded in count and time.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from statistics import median

import aiosmtplib

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from procs import free_port  # noqa: E402

SINK_CODE = """
import asyncio, sys
from aiosmtpd.smtp import SMTP
class Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"
async def main():
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(lambda: SMTP(Sink(), hostname="sink.bench", data_size_limit=None),
                                   "127.0.0.1", int(sys.argv[1]))
    await srv.serve_forever()
asyncio.run(main())
"""

# A second process that sends NOOP on its own connection every 5 ms while the replies are sent, and prints the
# round trips when its stdin closes. A NOOP is answered by the event loop between two other callbacks: its
# longest round trip bounds the longest time a handler held the loop (plus what was queued before it).
PROBE_CODE = """
import smtplib, sys, threading, time
conn = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=60)
conn.ehlo()
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
rtts = []
while not done.is_set():
    t0 = time.perf_counter()
    conn.noop()
    rtts.append(time.perf_counter() - t0)
    done.wait(0.005)
conn.quit()
rtts.sort()
print(rtts[-1] * 1000, rtts[int(0.99 * (len(rtts) - 1))] * 1000, len(rtts))
"""


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port} after {timeout} s")


def with_descendants(pids: list[int]) -> list[int]:
    """pids and every process they started (a gateway's own extra processes), from /proc (Linux)."""
    found, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        found.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                todo += [int(child) for child in task.read_text().split()]
            except (OSError, ValueError):
                pass
    return found


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """User and system (kernel) CPU seconds of the given processes, from /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            user += int(fields[11]) / tick
            system += int(fields[12]) / tick
        except (OSError, IndexError, ValueError):
            pass
    return user, system


def memory_kb(pid: int, field: str) -> int:
    """A VmRSS/VmHWM line of /proc/PID/status, in KB (0 when unreadable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak(pid: int) -> None:
    """Resets the process's peak RSS (VmHWM) to its current RSS (Linux 4.0+)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass


def make_mail(sender: str, rcpt: str, i: int, size: int, attachment: int) -> bytes:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = rcpt
    m["Subject"] = f"Re: benchmark {i}"
    m["Message-ID"] = make_msgid(domain="bench.test")
    words = f"Reply number {i}: the homepage looks good, ship it on Friday please. "
    body = (words * (size // len(words) + 1))[:size]
    quoted = "\n".join("> " + body[j:j + 70] for j in range(0, min(len(body), 700), 70))
    m.set_content(f"{body}\n\nOn Tue, Kim Lee wrote:\n{quoted}\n")
    if attachment:
        m.add_attachment(os.urandom(attachment), maintype="application", subtype="octet-stream",
                         filename=f"file{i}.bin")
    return m.as_bytes()


@dataclass
class Result:
    name: str
    sent: int
    ok: int
    seconds: float
    latencies: list[float]
    cpu: float  # user + system
    kernel_cpu: float  # of which system
    rss_growth_kb: int = 0  # peak RSS during the run minus RSS before it, summed over processes
    noop_max_ms: float = float("nan")  # longest NOOP round trip on the probe's connection (PROBE_CODE)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(p / 100 * len(data)))] * 1000

    @property
    def cpu_ms(self) -> float:
        return self.cpu / self.ok * 1000 if self.ok else float("nan")

    @property
    def kernel_share(self) -> float:
        return self.kernel_cpu / self.cpu if self.cpu else float("nan")


async def blast(ports: list[int], mails: list[bytes], sender: str, rcpt: str, connections: int,
                new_connection: bool, time_limit: float) -> tuple[int, float, list[float]]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for raw in mails:
        queue.put_nowait(raw)
    latencies: list[float] = []
    ok = 0
    deadline = time.monotonic() + time_limit

    async def one_connection(n: int) -> None:
        nonlocal ok
        port = ports[n % len(ports)]
        client: aiosmtplib.SMTP | None = None
        while not queue.empty() and time.monotonic() < deadline:
            raw = queue.get_nowait()
            if client is None:
                client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60, start_tls=False)
                await client.connect()
                await client.ehlo()
            await client.mail(sender)
            await client.rcpt(rcpt)
            t0 = time.perf_counter()
            try:
                await client.data(raw)
                ok += 1
                latencies.append(time.perf_counter() - t0)
            except aiosmtplib.SMTPResponseException:
                pass
            if new_connection:
                await client.quit()
                client = None
        if client is not None:
            await client.quit()

    t0 = time.perf_counter()
    await asyncio.gather(*(one_connection(n) for n in range(connections)))
    return ok, time.perf_counter() - t0, latencies


def run_target(name: str, ports: list[int], pids: list[int], mails: list[bytes], sender: str, rcpt: str,
               args: argparse.Namespace) -> Result:
    # A short warm-up so imports and caches are not measured.
    warm = args.warmup
    asyncio.run(blast(ports, mails[:warm], sender, rcpt, min(4, args.connections), args.new_connection, 60))
    pids = with_descendants(pids)
    for pid in pids:
        reset_peak(pid)
    rss0 = {pid: memory_kb(pid, "VmRSS") for pid in pids}
    probe = subprocess.Popen([sys.executable, "-c", PROBE_CODE, str(ports[0])], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    time.sleep(0.2)  # connected and sending
    user0, system0 = cpu_seconds(pids)
    ok, seconds, latencies = asyncio.run(blast(ports, mails[warm:], sender, rcpt, args.connections,
                                               args.new_connection, args.time_limit))
    growth = sum(max(0, memory_kb(pid, "VmHWM") - rss0[pid]) for pid in pids)
    user, system = cpu_seconds(pids)
    try:
        out, _ = probe.communicate("", timeout=30)
        noop_max = float(out.split()[0])
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        probe.kill()
        noop_max = float("nan")
    return Result(name, len(mails) - warm, ok, seconds, latencies, user + system - user0 - system0,
                  system - system0, growth, noop_max)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--size", type=int, default=2048, help="body size in bytes")
    ap.add_argument("--attachment", type=int, default=0, help="attachment size in bytes (0: none)")
    ap.add_argument("--new-connection", action="store_true", help="a new SMTP connection per message")
    ap.add_argument("--database-url", default="", help="postgresql://… (default: SQLite in a temp folder)")
    ap.add_argument("--gateways", type=int, default=1, help="number of `workrate smtp` processes, one port each")
    ap.add_argument("--processes", type=int, default=1,
                    help="gateway processes sharing one port (`workrate smtp --processes N`; 0: one per core)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure bare and ours this many times, alternately; medians are printed")
    ap.add_argument("--time-limit", type=float, default=120, help="seconds per target at most")
    ap.add_argument("--workrate", default=shutil.which("workrate") or str(Path(sys.executable).with_name("workrate")))
    args = ap.parse_args()
    args.messages = max(1, min(args.messages, 100_000))
    args.warmup = min(20, max(1, args.messages // 4))

    data = tempfile.mkdtemp(prefix="wr-bench-")
    env = dict(os.environ, WORKRATE_DATA_DIR=data, WORKRATE_REPLY_DOMAIN="reply.bench.test",
               WORKRATE_SECRET_KEY="bench-secret-key-0123456789abcdef0123", WORKRATE_LOG_LEVEL="WARNING",
               WORKRATE_MAX_MESSAGE_SIZE=str(max(26214400, args.attachment * 2 + 1_000_000)),
               # throughput, not the rate limit or the loop breaker; the NOOP probe is no idle client
               WORKRATE_POSTS_PER_MINUTE="100000000", WORKRATE_LOOP_POSTS="100000000",
               WORKRATE_SMTP_COMMANDS_PER_MAIL="100000000", WORKRATE_SMTP_IDLE_SESSION_SECONDS="100000")
    if args.database_url:
        env["WORKRATE_DATABASE_URL"] = args.database_url

    def cli(*a: str) -> str:
        return subprocess.run([args.workrate, *a], env=env, check=True, capture_output=True, text=True).stdout

    procs: list[subprocess.Popen] = []
    bares: list[Result] = []
    ours: list[Result] = []
    try:
        slug = cli("workspace", "create", f"Bench {time.time_ns()}").strip().splitlines()[-1]
        sender = f"client{time.time_ns()}@bench.test"
        cli("user", "add", sender, "--name", "Bench Client", "--client", slug, "--messages-access")
        rcpt = cli("reply-address", slug, "--as", sender).strip()

        sink_port = free_port()
        sink = subprocess.Popen([sys.executable, "-c", SINK_CODE, str(sink_port)])
        procs.append(sink)
        wait_port(sink_port, sink)
        ports, gateways = [], []
        for _ in range(args.gateways):
            port = free_port()
            gw = subprocess.Popen([args.workrate, "smtp", "--processes", str(args.processes)],
                                  env=dict(env, WORKRATE_SMTP_PORT=str(port)))
            procs.append(gw)
            gateways.append(gw)
            wait_port(port, gw)
            ports.append(port)
        if args.processes != 1:
            time.sleep(3)  # the extra processes start listening a moment after the first
        name = f"workrate smtp ×{args.gateways * (args.processes or os.cpu_count() or 1)}"
        for _ in range(args.rounds):
            # New mails every round (new Message-IDs: the same mail twice would be a duplicate, dropped).
            mails = [make_mail(sender, rcpt, i, args.size, args.attachment)
                     for i in range(args.messages + args.warmup)]
            bares.append(run_target("bare aiosmtpd", [sink_port], [sink.pid], mails, sender, rcpt, args))
            ours.append(run_target(name, ports, [g.pid for g in gateways], mails, sender, rcpt, args))
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(data, ignore_errors=True)

    db = "PostgreSQL" if args.database_url else "SQLite"
    print(f"ingest: {args.messages} replies of {args.size} B"
          + (f" + {args.attachment} B attachment" if args.attachment else "")
          + f", {args.connections} connections{', new connection per message' if args.new_connection else ''}, {db}"
          + (f", {args.rounds} rounds (bare, ours, bare, ours …), medians" if args.rounds > 1 else ""))
    print(f"{'target':24} {'ok':>6} {'msgs/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/msg':>11} {'kernel':>7}"
          f" {'peak RSS +MB':>13} {'NOOP max ms':>12}")
    for results in (bares, ours):
        print(f"{results[0].name:24} {median(r.ok for r in results):6.0f} {median(r.rate for r in results):9.1f}"
              f" {median(r.pct(50) for r in results):8.2f} {median(r.pct(99) for r in results):8.2f}"
              f" {median(r.cpu_ms for r in results):11.3f} {median(r.kernel_share for r in results):7.0%}"
              f" {max(r.rss_growth_kb for r in results) / 1024:13.1f} {max(r.noop_max_ms for r in results):12.1f}")
    # Ratios round by round (each pair ran back to back), then their median.
    ratios = [o.rate / b.rate if b.rate else float("nan") for b, o in zip(bares, ours, strict=True)]
    cpu_ratios = [o.cpu_ms / b.cpu_ms if b.cpu_ms else float("nan") for b, o in zip(bares, ours, strict=True)]
    rounds = (f"  (rounds: throughput {' '.join(f'{r:.2f}' for r in ratios)};"
              f" CPU {' '.join(f'{r:.2f}' for r in cpu_ratios)})") if args.rounds > 1 else ""
    print(f"ratio (workrate / bare aiosmtpd): throughput {median(ratios):.2f}×, CPU per message "
          f"{median(cpu_ratios):.2f}×{rounds}")
    return 0 if all(o.ok == o.sent for o in ours) else 1


if __name__ == "__main__":
    sys.exit(main())
