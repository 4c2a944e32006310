"""One connection to the broker with the settings' security, before a command starts its Kafka
clients: a refused login or an untrusted certificate is one clear error, not a retry storm.

aiokafka's clients log every failed bootstrap and raise `KafkaConnectionError("Unable to
bootstrap ...")` without the cause, and the worker would retry that for its whole
`--broker-wait`. A wrong password or certificate does not get better by retrying.
"""

from __future__ import annotations

import ssl

from aiokafka.conn import create_conn
from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from streams.runtime.settings import Settings


class BrokerAccessDenied(RuntimeError):
    """The broker answered but will not let these settings in (credentials, TLS)."""


def _split(server: str) -> tuple[str, int]:
    host, _, port = server.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port or 9092)


async def check_access(settings: Settings, timeout_s: float = 15.0) -> None:
    """Connect (and log in) to the first bootstrap server that answers.

    Raises `BrokerAccessDenied` (a one-line message, no secret in it) when a server refuses the
    credentials or its certificate is not trusted, and `KafkaConnectionError` when none answers
    (which may pass: a broker starting).
    """
    unreachable: list[str] = []
    for server in settings.bootstrap_servers:
        host, port = _split(server)
        try:
            conn = await create_conn(
                host,
                port,
                client_id="livepulse-access-check",
                request_timeout_ms=int(timeout_s * 1000),
                ssl_context=settings.ssl_context(),
                security_protocol=settings.security_protocol,
                sasl_mechanism=(settings.sasl_mechanism or "PLAIN")
                if settings.security_protocol.startswith("SASL")
                else None,
                sasl_plain_username=settings.sasl_username,
                sasl_plain_password=settings.sasl_password.get_secret_value()
                if settings.sasl_password is not None
                else None,
            )
        except IllegalSaslStateError as exc:
            raise BrokerAccessDenied(
                f"the broker {server} takes no SASL login on that port: does it listen with "
                f"{settings.security_protocol} there (LIVEPULSE_SECURITY_PROTOCOL)?"
            ) from exc
        except SaslAuthenticationFailed as exc:
            raise BrokerAccessDenied(
                f"the broker {server} refused user {settings.sasl_username!r} "
                f"({settings.sasl_mechanism or 'PLAIN'}): unknown user or wrong password "
                f"(LIVEPULSE_SASL_USERNAME, LIVEPULSE_SASL_PASSWORD)"
            ) from exc
        except UnsupportedSaslMechanismError as exc:
            raise BrokerAccessDenied(
                f"the broker {server} does not offer SASL mechanism "
                f"{settings.sasl_mechanism or 'PLAIN'} (LIVEPULSE_SASL_MECHANISM)"
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            raise BrokerAccessDenied(
                f"the TLS certificate of the broker {server} is not trusted "
                f"({exc.verify_message}): set LIVEPULSE_SSL_CAFILE to the CA that signed it"
            ) from exc
        except ssl.SSLError as exc:
            raise BrokerAccessDenied(
                f"TLS with the broker {server} failed ({exc.reason or exc}): does it listen "
                f"with {settings.security_protocol} on that port?"
            ) from exc
        except ConnectionResetError as exc:
            if not settings.uses_tls:
                unreachable.append(f"{server} ({exc.__class__.__name__})")
                continue
            # A listener without TLS drops a TLS ClientHello.
            raise BrokerAccessDenied(
                f"the broker {server} closed the connection at the TLS handshake: does it "
                f"listen with {settings.security_protocol} there (LIVEPULSE_SECURITY_PROTOCOL)?"
            ) from exc
        except (OSError, TimeoutError, KafkaConnectionError) as exc:
            unreachable.append(f"{server} ({exc.__class__.__name__})")
            continue
        conn.close()
        return
    raise KafkaConnectionError(f"no broker answers: {', '.join(unreachable)}")


async def access_denied(settings: Settings, timeout_s: float = 15.0) -> str | None:
    """Why the broker refuses these settings (one line), or None: let in, or not answering
    (a command's own connection then says more, or waits for it)."""
    try:
        await check_access(settings, timeout_s)
    except BrokerAccessDenied as exc:
        return str(exc)
    except (OSError, TimeoutError, KafkaConnectionError):
        return None
    return None
