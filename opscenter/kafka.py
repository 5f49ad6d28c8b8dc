"""Kafka connection options from the settings: one place for every aiokafka client and the Faust app.

Every producer, consumer and admin client of the product is built with :func:`client_kwargs`
and the Faust app with :func:`faust_credentials`, so SASL/SCRAM and TLS
(``OPSCENTER_KAFKA_SECURITY_PROTOCOL`` and friends, deploy/README.md "Security") apply to all
of them. The password goes to the client only; :func:`describe` is what may be logged.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from opscenter.settings import Settings, SettingsError


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SSL / SASL_SSL (server certificate and host name verified); None otherwise."""
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    for name, path in (("CAFILE", settings.kafka_ssl_cafile), ("CERTFILE", settings.kafka_ssl_certfile),
                       ("KEYFILE", settings.kafka_ssl_keyfile)):  # fmt: skip
        if path and not Path(path).is_file():
            raise SettingsError(f"OPSCENTER_KAFKA_SSL_{name}: no such file: {path}")
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.kafka_ssl_cafile or None)
        if settings.kafka_ssl_certfile:
            ctx.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile or None)
    except ssl.SSLError as exc:
        raise SettingsError(f"OPSCENTER_KAFKA_SSL_*: cannot load the TLS files: {exc}") from None
    return ctx


def _password(settings: Settings) -> str:
    password = settings.kafka_sasl_password.get_secret_value()
    if not password:
        raise SettingsError(
            f"OPSCENTER_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} needs OPSCENTER_KAFKA_SASL_PASSWORD"
        )
    return password


def client_kwargs(settings: Settings, context: ssl.SSLContext | None = None) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaProducer``, ``AIOKafkaConsumer`` and ``AIOKafkaAdminClient``.

    ``context`` reuses an already built TLS context (otherwise one is built from the settings).
    Raises :class:`SettingsError` for a missing SASL password or TLS file.
    """
    proto = settings.kafka_security_protocol
    kwargs: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap(), "security_protocol": proto}
    if proto in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = context or ssl_context(settings)
    if proto.startswith("SASL_"):
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = _password(settings)
    return kwargs


def faust_credentials(settings: Settings) -> Any:
    """``broker_credentials`` for ``faust.App`` (None for PLAINTEXT); the same options as :func:`client_kwargs`."""
    import faust

    proto = settings.kafka_security_protocol
    if proto == "PLAINTEXT":
        return None
    ctx = ssl_context(settings)
    if proto == "SSL":
        return faust.SSLCredentials(ctx)
    # with a TLS context Faust speaks SASL_SSL, without one SASL_PLAINTEXT
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=_password(settings),
        ssl_context=ctx,
        mechanism=settings.kafka_sasl_mechanism,
    )


def describe(settings: Settings) -> str:
    """The connection in one line for logs and banners: never the password."""
    proto = settings.kafka_security_protocol
    out = f"{settings.kafka_bootstrap()} ({proto}"
    if proto.startswith("SASL_"):
        out += f", {settings.kafka_sasl_mechanism} as {settings.kafka_sasl_username}"
    return out + ")"
