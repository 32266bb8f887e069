"""What a refused mail costs on disk: database and file store growth per mail a stranger sends to reply@.

usage: python bench/refused_mail.py [--count 20]

Runs a real gateway on loopback with a temporary SQLite database, sends --count mails of each size from an
unknown sender to reply@ (all refused 550), and prints the growth of the database file (with its WAL,
checkpointed) and of the file store per mail.
"""
from __future__ import annotations

import argparse
import base64
import os
import smtplib
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from gateway_support import start_gateway  # noqa: E402

from config import Settings  # noqa: E402
from storage import db, migrations  # noqa: E402

SIZES = (2_000, 240_000, 4_700_000)


def disk(settings: Settings) -> tuple[int, int]:
    db.database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    database = Path(settings.data_dir) / "workrate.db"
    files = Path(settings.effective_files_dir)
    stored = sum(p.stat().st_size for p in files.rglob("*") if p.is_file()) if files.exists() else 0
    return database.stat().st_size, stored


def mail(size: int, i: int) -> bytes:
    body = base64.encodebytes(os.urandom(size * 3 // 4)).replace(b"\n", b"\r\n")
    return (b"From: Mallory <mallory@evil.test>\r\nTo: reply@reply.bench.test\r\nSubject: hello\r\n"
            + f"Message-ID: <m{i}.{size}@evil.test>\r\n".encode()
            + b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), secret_key="bench", reply_domain="reply.bench.test", smtp_port=0,
                            reply_plain_per_hour=1_000_000, max_message_size=30_000_000)
        db.bind(settings)
        migrations.migrate()
        db.database.connect(reuse_if_open=True)
        gateway = start_gateway(settings)
        try:
            print(f"{'mail size':>10} {'database per mail':>18} {'file store per mail':>20}")
            for size in SIZES:
                before = disk(settings)
                for i in range(args.count):
                    with smtplib.SMTP("127.0.0.1", gateway.port, timeout=120) as client:
                        client.ehlo("bench.test")
                        client.mail("mallory@evil.test")
                        client.rcpt("reply@reply.bench.test")
                        code, _ = client.data(mail(size, i))
                        assert code == 550, code
                after = disk(settings)
                print(f"{size:>10,} {(after[0] - before[0]) / args.count:>18,.0f} "
                      f"{(after[1] - before[1]) / args.count:>20,.0f}")
        finally:
            gateway.stop()


if __name__ == "__main__":
    main()
