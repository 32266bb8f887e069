"""Schema migrations run once, safely, when several processes start at the same moment: six
`workrate init-db` processes started together on an empty database all succeed, exactly one of them
applies each migration, and the schema ends at the latest version (on SQLite through BEGIN IMMEDIATE,
on PostgreSQL through an advisory transaction lock). The PostgreSQL case creates its own database on
127.0.0.1:5432 and skips with the reason when no server answers there."""
from __future__ import annotations

import re
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from procs import ROOT, WORKRATE, base_environment, fresh_postgres_database, postgres_unavailable_reason, query

from storage.migrations import LATEST_VERSION, MIGRATIONS

pytestmark = pytest.mark.slow

PROCESSES = 6


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(kind, URL) of an empty database: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield "sqlite", f"sqlite:///{tmp_path / 'race.db'}"
        return
    reason = postgres_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with fresh_postgres_database("wr_migrations_race") as url:
        yield "postgresql", url


def versions(kind: str, url: str) -> list[int]:
    sql = "SELECT version FROM schema_version ORDER BY version"
    if kind == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return [v for (v,) in conn.execute(sql)]
    return [v for (v,) in query(url, sql)]


def test_processes_starting_together_migrate_once(empty_database: tuple[str, str], tmp_path: Path) -> None:
    # Six processes race on an empty database: all exit 0, one applies the migrations, all report the latest.
    kind, url = empty_database
    env = base_environment(WORKRATE_DATABASE_URL=url, WORKRATE_DATA_DIR=str(tmp_path / "var"),
                           WORKRATE_SECRET_KEY="migrations-race-secret", WORKRATE_LOG_LEVEL="WARNING")
    procs = [subprocess.Popen([str(WORKRATE), "init-db"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(PROCESSES)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * PROCESSES, results
    outputs = [out.strip() for out, _ in results]
    assert all(o.startswith(f"Schema at version {LATEST_VERSION}") for o in outputs), outputs
    applied = [re.search(r"applied \[([\d, ]+)\]", o) for o in outputs]
    appliers = [m.group(1) for m in applied if m]
    assert appliers == [", ".join(str(v) for v, _ in MIGRATIONS)], outputs
    assert versions(kind, url) == [v for v, _ in MIGRATIONS]
