"""Kafka SASL/TLS, Redis and ClickHouse credentials from the settings (opscenter/kafka.py, settings.py).

The mapping from settings to the aiokafka keyword arguments and to Faust's broker credentials,
the checks that stop a process at start with a clear message (and no secret in it), that every
Kafka client of the product is built from that one mapping, and a real TLS handshake (mutual
TLS against a local TLS listener) with the CA and client certificate files of the settings.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from opscenter import kafka
from opscenter.cli import main as cli_main
from opscenter.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]
KAFKA = "kafka://k1:9093,k2:9093"
SECRET = "s3cr3t-Pa55"


def sasl(proto: str = "SASL_SSL", mechanism: str = "SCRAM-SHA-512", **extra: Any) -> Settings:
    return Settings(kafka_url=KAFKA, kafka_security_protocol=proto, kafka_sasl_mechanism=mechanism,
                    kafka_sasl_username="opscenter-worker", kafka_sasl_password=SECRET, **extra)  # fmt: skip


# --------------------------------------------------------------------------- mapping


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    s = Settings(kafka_url=KAFKA)
    assert kafka.client_kwargs(s) == {"bootstrap_servers": "k1:9093,k2:9093", "security_protocol": "PLAINTEXT"}
    assert kafka.faust_credentials(s) is None
    assert kafka.describe(s) == "k1:9093,k2:9093 (PLAINTEXT)"


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
@pytest.mark.parametrize("proto", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_maps_to_aiokafka_and_faust_alike(proto: str, mechanism: str) -> None:
    s = sasl(proto, mechanism)
    kw = kafka.client_kwargs(s)
    assert kw["security_protocol"] == proto
    assert (kw["sasl_mechanism"], kw["sasl_plain_username"], kw["sasl_plain_password"]) == (
        mechanism, "opscenter-worker", SECRET)  # fmt: skip
    assert isinstance(kw.get("ssl_context"), ssl.SSLContext) == (proto == "SASL_SSL")
    # Faust hands its credentials to aiokafka through this function: the same options result
    faust_kw = dict(credentials_to_aiokafka_auth(kafka.faust_credentials(s)))
    faust_ctx = faust_kw.pop("ssl_context")
    assert isinstance(faust_ctx, ssl.SSLContext) == (proto == "SASL_SSL")
    assert faust_kw == {k: v for k, v in kw.items() if k not in ("bootstrap_servers", "ssl_context")}


def test_tls_context_verifies_the_broker() -> None:
    s = Settings(kafka_url=KAFKA, kafka_security_protocol="SSL")
    ctx = kafka.client_kwargs(s)["ssl_context"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert credentials_to_aiokafka_auth(kafka.faust_credentials(s))["security_protocol"] == "SSL"


async def test_aiokafka_accepts_the_options() -> None:
    """The keyword arguments are valid for a real AIOKafkaProducer (it checks SSL/SASL combinations)."""
    for s in (sasl("SASL_SSL"), sasl("SASL_PLAINTEXT", "PLAIN"), Settings(kafka_url=KAFKA, kafka_security_protocol="SSL")):
        producer = AIOKafkaProducer(**kafka.client_kwargs(s))
        assert producer.client._security_protocol == s.kafka_security_protocol  # noqa: SLF001
        await producer.stop()


def test_redis_and_clickhouse_credentials_stay_out_of_the_urls() -> None:
    s = Settings(redis_url="redis://redis:6379/0", redis_password="r-pw", clickhouse_dsn="http://clickhouse:8123",
                 clickhouse_username="opscenter", clickhouse_password="c-pw")  # fmt: skip
    assert s.redis_credentials() == {"password": "r-pw"}
    assert s.clickhouse_credentials() == {"username": "opscenter", "password": "c-pw"}
    assert Settings().redis_credentials() == {} and Settings().clickhouse_credentials() == {}


# --------------------------------------------------------------------------- checks at start

BAD = [
    ({"kafka_url": KAFKA, "kafka_security_protocol": "SASL_SSL"}, "OPSCENTER_KAFKA_SASL_USERNAME"),
    ({"kafka_url": KAFKA, "kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_password": SECRET},
     "OPSCENTER_KAFKA_SASL_USERNAME"),
    ({"kafka_security_protocol": "SSL"}, "embedded broker speaks PLAINTEXT only"),
    ({"kafka_url": KAFKA, "kafka_sasl_username": "u", "kafka_sasl_password": SECRET},
     "does not use SASL"),
    ({"kafka_url": KAFKA, "kafka_ssl_cafile": "/etc/ca.pem"}, "OPSCENTER_KAFKA_SSL_CAFILE set but"),
    ({"kafka_url": KAFKA, "kafka_security_protocol": "SSL", "kafka_ssl_keyfile": "/k.pem"},
     "OPSCENTER_KAFKA_SSL_KEYFILE needs OPSCENTER_KAFKA_SSL_CERTFILE"),
    ({"kafka_url": KAFKA, "kafka_security_protocol": "TLS"}, "OPSCENTER_KAFKA_SECURITY_PROTOCOL"),
    ({"kafka_url": KAFKA, "kafka_sasl_mechanism": "GSSAPI"}, "OPSCENTER_KAFKA_SASL_MECHANISM"),
    ({"redis_password": SECRET}, "embedded Valkey has no password"),
    ({"redis_url": f"redis://:{SECRET}@r:6379/0", "redis_password": SECRET}, "keep one"),
    ({"clickhouse_password": SECRET}, "embedded chDB has no users"),
    ({"clickhouse_dsn": f"http://u:{SECRET}@ch:8123", "clickhouse_username": "u"}, "keep one"),
]  # fmt: skip


@pytest.mark.parametrize(("values", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_settings_that_cannot_work_fail_at_start(values: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(**values)
    assert message in str(info.value)
    assert SECRET not in str(info.value), "a password in the error message"


@pytest.mark.parametrize("proto", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_missing_sasl_password_stops_the_first_client(proto: str) -> None:
    """The password usually comes from a Secret of its own: checked when a client is built, at start."""
    s = Settings(kafka_url=KAFKA, kafka_security_protocol=proto, kafka_sasl_username="opscenter")
    for build in (kafka.client_kwargs, kafka.faust_credentials):
        with pytest.raises(SettingsError, match=f"{proto} needs OPSCENTER_KAFKA_SASL_PASSWORD"):
            build(s)


def test_missing_tls_file_is_named() -> None:
    s = Settings(kafka_url=KAFKA, kafka_security_protocol="SSL", kafka_ssl_cafile="/nonexistent/ca.pem")
    with pytest.raises(SettingsError, match="OPSCENTER_KAFKA_SSL_CAFILE: no such file: /nonexistent/ca.pem"):
        kafka.client_kwargs(s)


def test_cli_refuses_to_start_with_a_clear_message(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setenv("OPSCENTER_KAFKA_URL", KAFKA)
    monkeypatch.setenv("OPSCENTER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("OPSCENTER_KAFKA_SASL_PASSWORD", SECRET)
    assert cli_main(["worker"]) == 2
    err = capsys.readouterr().err
    assert "OPSCENTER_KAFKA_SASL_USERNAME" in err and "Traceback" not in err
    assert SECRET not in err


def test_cli_names_a_missing_password_without_a_traceback(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setenv("OPSCENTER_KAFKA_URL", "kafka://127.0.0.1:1")
    monkeypatch.setenv("OPSCENTER_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("OPSCENTER_KAFKA_SASL_USERNAME", "opscenter")
    assert cli_main(["simulate", "--duration", "0"]) == 2  # the first Kafka client it builds refuses
    err = capsys.readouterr().err
    assert "OPSCENTER_KAFKA_SASL_PASSWORD" in err and "Traceback" not in err


def test_secrets_never_show_in_the_settings_repr() -> None:
    s = sasl(redis_url=f"redis://:{SECRET}@redis:6379/0", clickhouse_dsn=f"http://opscenter:{SECRET}@ch:8123",
             secret_key=SECRET)  # fmt: skip
    for text in (repr(s), str(s), kafka.describe(s)):
        assert SECRET not in text
    assert "redis://:***@redis:6379/0" in repr(s) and "http://opscenter:***@ch:8123" in repr(s)


# --------------------------------------------------------------------------- every client uses it

CLIENT_CALL = re.compile(r"\b(AIOKafkaProducer|AIOKafkaConsumer|AIOKafkaAdminClient|faust\.App)\(")


def _call_text(src: str, start: int) -> str:
    depth, i = 0, start
    while True:
        depth += {"(": 1, ")": -1}.get(src[i], 0)
        if depth == 0 and src[i] == ")":
            return src[start : i + 1]
        i += 1


def test_every_kafka_client_of_the_product_uses_the_settings() -> None:
    """Each client of the configured broker; benchmarks on a private embedded Tansu (PLAINTEXT only) aside."""
    found = []
    for folder in ("opscenter", "streams", "alerts", "dashboard"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            src = path.read_text(encoding="utf-8")
            if path.name.startswith("bench") and "start_tansu(" in src and path.name != "bench.py":
                continue
            for m in CLIENT_CALL.finditer(src):
                call = _call_text(src, m.end() - 1)
                rel = f"{path.relative_to(ROOT)}:{src.count(chr(10), 0, m.start()) + 1}"
                found.append(rel)
                if m.group(1) == "faust.App":
                    assert "broker_credentials=kafka.faust_credentials(" in call, f"{rel}: Faust app without credentials"
                elif path.name != "registry.py":  # LifecycleReader gets the kwargs from open_services
                    assert "**kafka.client_kwargs(" in call, f"{rel}: Kafka client without the security settings"
                else:
                    assert "**conn" in call, rel
    assert len(found) >= 6, found  # services (admin, producer), runner, bench (2), registry, app
    services = (ROOT / "opscenter" / "services.py").read_text(encoding="utf-8")
    assert "LifecycleReader(kafka.client_kwargs(settings)" in services


# --------------------------------------------------------------------------- a real TLS handshake


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a broker certificate for 127.0.0.1 and a client certificate, made with openssl."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make test certificates (apt-get install openssl)")
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=opscenter-test-ca", cwd=d)  # fmt: skip
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, cn, ext in (("broker", "127.0.0.1", ["-extfile", "san.cnf"]), ("client", "opscenter-worker", [])):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={cn}", cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", *ext, cwd=d)  # fmt: skip
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out", "other-ca.pem",
             "-days", "2", "-subj", "/CN=someone-else", cwd=d)  # fmt: skip
    return d


async def _tls_listener(pki: Path) -> tuple[asyncio.Server, int, asyncio.Queue]:
    """A TLS listener that demands a client certificate and records the first Kafka request."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
    ctx.load_cert_chain(str(pki / "broker.pem"), str(pki / "broker.key"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    seen: asyncio.Queue = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            peer = writer.get_extra_info("peercert")
            size = struct.unpack(">i", await reader.readexactly(4))[0]
            api_key = struct.unpack(">h", (await reader.readexactly(size))[:2])[0]
            seen.put_nowait((dict(x[0] for x in peer["subject"])["commonName"], api_key))
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    return server, server.sockets[0].getsockname()[1], seen


async def test_mutual_tls_with_the_configured_files(pki: Path) -> None:
    server, port, seen = await _tls_listener(pki)
    try:
        s = Settings(kafka_url=f"kafka://127.0.0.1:{port}", kafka_security_protocol="SSL",
                     kafka_ssl_cafile=str(pki / "ca.pem"), kafka_ssl_certfile=str(pki / "client.pem"),
                     kafka_ssl_keyfile=str(pki / "client.key"))  # fmt: skip
        producer = AIOKafkaProducer(**kafka.client_kwargs(s), request_timeout_ms=2000, retry_backoff_ms=50)
        start = asyncio.ensure_future(producer.start())
        client_cn, api_key = await asyncio.wait_for(seen.get(), 10)
        assert client_cn == "opscenter-worker"  # our client certificate, verified by the listener
        assert api_key == 18  # ApiVersions: aiokafka's first request, sent inside TLS
        start.cancel()
        await asyncio.gather(start, return_exceptions=True)
        await producer.stop()

        # a broker certificate from a CA that is not the configured one is refused by the client
        wrong = s.model_copy(update={"kafka_ssl_cafile": str(pki / "other-ca.pem")})
        producer = AIOKafkaProducer(**kafka.client_kwargs(wrong), request_timeout_ms=1000, retry_backoff_ms=50)
        with pytest.raises(Exception):  # noqa: B017 - aiokafka reports it as a connection error
            await asyncio.wait_for(producer.start(), 10)
        await producer.stop()
        assert seen.empty(), "a request was sent to a broker whose certificate was not verified"
    finally:
        server.close()
        await server.wait_closed()
