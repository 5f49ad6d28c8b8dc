"""One typed, frozen settings object for every opscenter process (prefix ``OPSCENTER_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the product; nothing else reads ``os.environ``.

    Empty ``kafka_url``, ``redis_url`` or ``clickhouse_dsn`` means "start the embedded
    service" under ``opscenter up``; a value means "use that real service".
    """

    model_config = SettingsConfigDict(env_prefix="OPSCENTER_", frozen=True, extra="ignore")

    # --- services -----------------------------------------------------------------
    kafka_url: str = Field("", description="Kafka bootstrap, e.g. kafka://kafka:9092; empty = embedded Tansu")
    redis_url: str = Field("", description="Redis URL, e.g. redis://redis:6379/0; empty = embedded Valkey")
    clickhouse_dsn: str = Field(
        "", description="ClickHouse DSN, e.g. http://default:pw@clickhouse:8123; empty = chDB in data_dir"
    )
    clickhouse_database: str = Field("opscenter", description="ClickHouse database name")
    data_dir: Path = Field(Path("var"), description="where embedded chDB, Valkey and Faust keep their files")

    # --- embedded ports (loopback) -------------------------------------------------
    host: str = Field("127.0.0.1", description="interface the embedded services and web app bind")
    kafka_port: int = Field(19092, description="embedded Tansu broker port")
    redis_port: int = Field(16379, description="embedded Valkey port")
    web_port: int = Field(8080, description="web app (dashboard, API) port")

    # --- streams ------------------------------------------------------------------
    app_id: str = Field("opscenter", description="Faust app id (consumer group)")
    topic_partitions: int = Field(4, description="partitions of each topic created at start")
    topic_replicas: int = Field(1, description="replication factor of topics created at start")
    broker_session_timeout_s: float = Field(10.0, description="consumer session timeout")
    broker_heartbeat_s: float = Field(3.0, description="consumer heartbeat interval")
    commit_interval_s: float = Field(1.0, description="Faust offset commit interval")
    consumer_fetch_wait_ms: int = Field(
        100, ge=1, le=1500,
        description="longest a worker's fetch waits for data (Faust hard-codes 1500 ms; lower = faster alerts)",
    )  # fmt: skip
    ingest_batch_messages: int = Field(200, description="telemetry messages per processing batch")
    ingest_batch_ms: int = Field(200, description="longest wait to fill a processing batch")
    allowed_lateness_s: int = Field(120, description="event-time lateness still counted in the live 1-min window")
    max_future_s: int = Field(300, description="samples further in the future than this are rejected")
    raw_retention_days: int = Field(90, description="TTL of raw samples; older samples are rejected")
    worker_web_port: int = Field(6066, description="Faust's own web port for `opscenter worker`")

    # --- web ----------------------------------------------------------------------
    ingest_max_body_bytes: int = Field(4 * 1024 * 1024, description="largest accepted HTTP ingest body")
    ingest_max_samples: int = Field(5000, description="most samples in one telemetry batch")
    ingest_rate_samples_s: float = Field(
        50_000.0, description="HTTP ingest rate limit per provider and web process, samples/s; 0 = none"
    )
    ingest_burst_samples: int = Field(
        100_000, description="HTTP ingest burst per provider (token bucket size), samples"
    )
    users_file: str = Field(
        "", description="YAML file of users (argon2 hashes) loaded into an empty users table; empty + demo = demo users"
    )
    secret_key: SecretStr = Field(
        SecretStr("dev-only-change-me"), description="signing key for sessions; set in production"
    )

    # --- demo / simulator -----------------------------------------------------------
    demo: bool = Field(True, description="publish the demo city's inventory and tokens on first start")
    simulate_resources: int = Field(300, description="resources the simulator drives")
    simulate_interval_s: float = Field(15.0, description="seconds between samples of one resource")

    # --- data files (empty: the packaged defaults) ---------------------------------------
    sla_targets_file: str = Field("", description="SLA targets per severity (YAML); empty = opscenter/data/sla_targets.yaml")
    sla_assurance_file: str = Field(
        "", description="SLA targets inside assurance periods (YAML); empty = opscenter/data/sla_assurance.yaml"
    )
    alerts_rules_path: str = Field("", description="alert rules (YAML); empty = alerts/rules.yaml")
    alerts_calendar_path: str = Field("", description="assurance-period calendar (YAML); empty = alerts/calendar.yaml")

    log_level: str = Field("info", description="crit/error/warn/info/debug")

    # --- derived --------------------------------------------------------------------
    @property
    def embedded_kafka(self) -> bool:
        return not self.kafka_url

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url

    @property
    def embedded_clickhouse(self) -> bool:
        return not self.clickhouse_dsn

    def kafka_bootstrap(self) -> str:
        """``host:port`` list for aiokafka."""
        url = self.kafka_url or f"kafka://{self.host}:{self.kafka_port}"
        return ",".join(part.split("://", 1)[-1] for part in url.split(","))

    def faust_broker(self) -> str:
        url = self.kafka_url or f"kafka://{self.host}:{self.kafka_port}"
        return ";".join(p if "://" in p else f"kafka://{p}" for p in url.split(","))

    def redis(self) -> str:
        return self.redis_url or f"redis://{self.host}:{self.redis_port}/0"

    def clickhouse(self) -> str:
        return self.clickhouse_dsn or f"chdb://{(self.data_dir / 'chdb').resolve()}"


def redact(url: str) -> str:
    """A URL or DSN with its password replaced by ``***`` (for logs and banners)."""
    import re

    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def load_settings(**overrides: object) -> Settings:
    """Build the settings once per process; overrides win over the environment."""
    return Settings(**overrides)  # type: ignore[arg-type]
