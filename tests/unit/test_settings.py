"""Settings: environment prefix, embedded defaults, redaction of secrets."""

from __future__ import annotations

import pytest

from opscenter.settings import Settings, redact


def test_defaults_are_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("OPSCENTER_KAFKA_URL", "OPSCENTER_REDIS_URL", "OPSCENTER_CLICKHOUSE_DSN"):
        monkeypatch.delenv(k, raising=False)
    s = Settings()
    assert s.embedded_kafka and s.embedded_redis and s.embedded_clickhouse
    assert s.kafka_bootstrap() == "127.0.0.1:19092"
    assert s.clickhouse().startswith("chdb://") and s.clickhouse().endswith("var/chdb")


def test_real_services_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSCENTER_KAFKA_URL", "kafka://k1:9092,kafka://k2:9092")
    monkeypatch.setenv("OPSCENTER_REDIS_URL", "redis://:pw@r:6379/0")
    monkeypatch.setenv("OPSCENTER_CLICKHOUSE_DSN", "http://u:pw@ch:8123")
    s = Settings()
    assert not (s.embedded_kafka or s.embedded_redis or s.embedded_clickhouse)
    assert s.kafka_bootstrap() == "k1:9092,k2:9092"
    assert s.faust_broker() == "kafka://k1:9092;kafka://k2:9092"


def test_settings_are_frozen() -> None:
    with pytest.raises(Exception):
        Settings().web_port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "url, shown",
    [
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
        ("http://opscenter:s3cret@clickhouse:8123", "http://opscenter:***@clickhouse:8123"),
        ("chdb:///var/chdb", "chdb:///var/chdb"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown
