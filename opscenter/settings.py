"""One typed, frozen settings object for every opscenter process (prefix ``OPSCENTER_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the product; nothing else reads ``os.environ``.

    Empty ``kafka_url``, ``redis_url`` or ``clickhouse_dsn`` means "start the embedded
    service" under ``opscenter up``; a value means "use that real service".
    """

    model_config = SettingsConfigDict(env_prefix="OPSCENTER_", frozen=True, extra="ignore")

    # --- services -----------------------------------------------------------------
    kafka_url: str = Field("", description="Kafka bootstrap, e.g. kafka://kafka:9092; empty = embedded Tansu")
    redis_url: str = Field("", description="Redis URL (Redis ≥ 7 or Valkey), e.g. redis://redis:6379/0; empty = embedded Valkey")
    clickhouse_dsn: str = Field(
        "", description="ClickHouse DSN, e.g. http://default:pw@clickhouse:8123; empty = chDB in data_dir"
    )
    clickhouse_database: str = Field("opscenter", description="ClickHouse database name")
    data_dir: Path = Field(Path("var"), description="where embedded chDB, Valkey and Faust keep their files")

    # --- credentials and transport security (production; docs: deploy/README.md "Security") ---
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka transport: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (SASL over TLS)"
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism with SASL_PLAINTEXT / SASL_SSL"
    )
    kafka_sasl_username: str = Field("", description="SASL user; required with SASL_PLAINTEXT / SASL_SSL")
    kafka_sasl_password: SecretStr = Field(
        SecretStr(""), description="SASL password; required with SASL_PLAINTEXT / SASL_SSL"
    )
    kafka_ssl_cafile: str = Field(
        "", description="PEM file of the CA(s) that signed the brokers' certificates; empty = the system CAs"
    )
    kafka_ssl_certfile: str = Field("", description="client certificate (PEM) for mutual TLS; empty = none")
    kafka_ssl_keyfile: str = Field("", description="private key (PEM) of kafka_ssl_certfile, if not inside it")
    redis_password: SecretStr = Field(
        SecretStr(""), description="Redis password (AUTH), kept out of redis_url; empty = none or in the URL"
    )
    clickhouse_username: str = Field("", description="ClickHouse user, kept out of clickhouse_dsn; empty = the DSN's")
    clickhouse_password: SecretStr = Field(
        SecretStr(""), description="ClickHouse password, kept out of clickhouse_dsn; empty = none or in the DSN"
    )

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
    ingest_batch_messages: int = Field(
        500, ge=1, description="most telemetry messages per processing batch (a backlog is taken in big batches)"
    )
    ingest_batch_ms: int = Field(50, description="longest wait to fill a processing batch (adds to alert latency at low load)")
    allowed_lateness_s: int = Field(120, description="event-time lateness still counted in the live 1-min window")
    max_future_s: int = Field(300, description="samples further in the future than this are rejected")
    raw_retention_days: int = Field(90, description="TTL of raw samples; older samples are rejected")
    worker_web_port: int = Field(6066, description="Faust's own web port for `opscenter worker`")

    # --- telemetry quality, nodata (§17; docs/telemetry-quality.md) ---------------------------
    nodata_intervals: int = Field(
        3, ge=1, description="a resource silent for this many of its declared intervals raises `nodata`"
    )
    nodata_incident_after_s: float = Field(
        900.0, gt=0, description="silence (from the last sample) after which an auto-detected incident is opened"
    )
    nodata_incident_severity: str = Field(
        "P3", pattern=r"^P[1-4]$", description="severity (P1–P4) of auto-detected nodata incidents"
    )
    nodata_startup_grace_s: float = Field(
        300.0, ge=0, description="no new `nodata` this long after a worker starts (live state may be incomplete)"
    )
    nodata_tick_s: float = Field(5.0, gt=0, description="how often the leader worker looks for silent resources")
    nodata_outage_pct: float = Field(
        50.0, gt=0, le=100, description="`provider_outage` when at least this % of a provider's in-service resources are in nodata"
    )
    nodata_outage_min_resources: int = Field(
        3, ge=1, description="a provider needs at least this many in-service resources for a `provider_outage`"
    )
    quality_low_pct: float = Field(
        90.0, ge=0, le=100, description="`telemetry_quality` when a provider's completeness over the window falls below this %"
    )
    quality_clear_pct: float = Field(
        95.0, ge=0, le=100, description="the `telemetry_quality` signal clears when completeness is back at or above this %"
    )
    quality_window_s: int = Field(3600, ge=60, description="window of the provider completeness behind `telemetry_quality`")
    quality_tick_s: float = Field(60.0, gt=0, description="how often the leader worker recomputes provider completeness")

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

    def redis_credentials(self) -> dict[str, str]:
        """redis-py keyword arguments for the password kept out of the URL (empty: none)."""
        pw = self.redis_password.get_secret_value()
        return {"password": pw} if pw else {}

    def clickhouse_credentials(self) -> dict[str, str]:
        """clickhouse-connect keyword arguments for the user and password kept out of the DSN."""
        out = {}
        if self.clickhouse_username:
            out["username"] = self.clickhouse_username
        if self.clickhouse_password.get_secret_value():
            out["password"] = self.clickhouse_password.get_secret_value()
        return out

    # --- checks at start ------------------------------------------------------------
    @model_validator(mode="after")
    def _check_credentials(self) -> Settings:
        """Security settings that cannot work together fail at start, naming the variables."""
        problems = []
        proto = self.kafka_security_protocol
        sasl, tls = proto.startswith("SASL_"), proto in ("SSL", "SASL_SSL")
        if proto != "PLAINTEXT" and self.embedded_kafka:
            problems.append(
                f"OPSCENTER_KAFKA_SECURITY_PROTOCOL={proto} needs OPSCENTER_KAFKA_URL: "
                "the embedded broker speaks PLAINTEXT only"
            )
        # (a missing password is reported when the first Kafka client is built, opscenter.kafka:
        # it usually comes from another source, a Secret, than the rest of the settings)
        if sasl and not self.kafka_sasl_username:
            problems.append(f"OPSCENTER_KAFKA_SECURITY_PROTOCOL={proto} needs OPSCENTER_KAFKA_SASL_USERNAME")
        if not sasl and (self.kafka_sasl_username or self.kafka_sasl_password.get_secret_value()):
            problems.append(
                f"OPSCENTER_KAFKA_SASL_USERNAME/PASSWORD are set but OPSCENTER_KAFKA_SECURITY_PROTOCOL={proto} "
                "does not use SASL (SASL_SSL or SASL_PLAINTEXT)"
            )
        files = {"CAFILE": self.kafka_ssl_cafile, "CERTFILE": self.kafka_ssl_certfile, "KEYFILE": self.kafka_ssl_keyfile}
        if not tls and any(files.values()):
            names = ", ".join(f"OPSCENTER_KAFKA_SSL_{k}" for k, v in files.items() if v)
            problems.append(f"{names} set but OPSCENTER_KAFKA_SECURITY_PROTOCOL={proto} does not use TLS (SSL or SASL_SSL)")
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            problems.append("OPSCENTER_KAFKA_SSL_KEYFILE needs OPSCENTER_KAFKA_SSL_CERTFILE (the client certificate)")
        if self.redis_password.get_secret_value():
            if self.embedded_redis:
                problems.append("OPSCENTER_REDIS_PASSWORD needs OPSCENTER_REDIS_URL: the embedded Valkey has no password")
            elif _has_password(self.redis_url):
                problems.append("the Redis password is both in OPSCENTER_REDIS_URL and OPSCENTER_REDIS_PASSWORD: keep one")
        if self.clickhouse_username or self.clickhouse_password.get_secret_value():
            if self.embedded_clickhouse:
                problems.append(
                    "OPSCENTER_CLICKHOUSE_USERNAME/PASSWORD need OPSCENTER_CLICKHOUSE_DSN: embedded chDB has no users"
                )
            elif "@" in self.clickhouse_dsn.split("://", 1)[-1].split("/", 1)[0]:
                problems.append(
                    "the ClickHouse user is both in OPSCENTER_CLICKHOUSE_DSN and OPSCENTER_CLICKHOUSE_USERNAME/PASSWORD: "
                    "keep one"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def __repr_args__(self) -> Any:
        # URLs may carry passwords (redis://:pw@…, http://user:pw@…): never show them in logs
        for name, value in super().__repr_args__():
            yield name, redact(value) if isinstance(value, str) and "://" in value else value


def _has_password(url: str) -> bool:
    return redact(url) != url


def redact(url: str) -> str:
    """A URL or DSN with its password replaced by ``***`` (for logs and banners)."""
    import re

    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


class SettingsError(ValueError):
    """Settings that cannot start the process; the message names variables, never secret values."""


def load_settings(**overrides: object) -> Settings:
    """Build the settings once per process; overrides win over the environment.

    Raises :class:`SettingsError` with one line per problem. Pydantic's own message would
    repeat the input values, passwords included, so it is not passed on.
    """
    from pydantic import ValidationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_input=False, include_url=False, include_context=False):
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"OPSCENTER_{'_'.join(str(p) for p in err['loc']).upper()}: {msg}" if err["loc"] else msg)
        raise SettingsError("invalid settings: " + "; ".join(lines)) from None
