"""Shared fixtures: the real embedded services on free loopback ports, started once per session."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Iterator

import hypothesis  # noqa: F401 - imported up front, see below
import pytest

from opscenter.embedded import Child, free_port, start_tansu, start_valkey
from opscenter.settings import Settings

# hypothesis's pytest plugin imports hypothesis at the end of a session that has not used it yet;
# after the e2e and alert tests, CPython 3.11.7's parser then raised "SystemError: AST constructor
# recursion depth mismatch" while pytest rewrote that import, turning an all-passed run into a
# crash (runs of a subset only: the whole suite imports it early through test_fuzz).
_db_counter = itertools.count()


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("opscenter")


@pytest.fixture(scope="session")
def valkey(session_dir: Path) -> Iterator[str]:
    port = free_port()
    child = start_valkey("127.0.0.1", port, session_dir / "valkey", session_dir / "logs")
    yield f"redis://127.0.0.1:{port}/0"
    child.stop()


@pytest.fixture(scope="session")
def chdb_dsn(session_dir: Path) -> str:
    """One chDB path for the whole test process (chDB allows one path per process)."""
    return f"chdb://{session_dir / 'chdb'}"


def _tansu(session_dir: Path, name: str) -> tuple[Child, str]:
    port = free_port()
    child = start_tansu("127.0.0.1", port, session_dir / "logs" / name)
    return child, f"kafka://127.0.0.1:{port}"


@pytest.fixture
def broker(session_dir: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh Tansu broker per test: Tansu never deletes, so a clean log isolates tests."""
    child, url = _tansu(session_dir, request.node.name[:60])
    yield url
    child.stop()


@pytest.fixture
def settings(broker: str, valkey: str, chdb_dsn: str, session_dir: Path) -> Settings:
    """Settings pointing at the real services, with a database of its own for this test."""
    import redis

    redis.Redis.from_url(valkey).flushall()  # live state and batch ids of earlier tests
    return Settings(
        kafka_url=broker,
        redis_url=valkey,
        clickhouse_dsn=chdb_dsn,
        clickhouse_database=f"t{os.getpid()}_{next(_db_counter)}",
        data_dir=session_dir / "data",
        app_id=f"test-{next(_db_counter)}",
        topic_partitions=2,
        ingest_batch_ms=50,
        commit_interval_s=0.5,
        demo=False,
    )
