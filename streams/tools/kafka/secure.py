"""A second local broker that requires SASL_SSL, as hosted and most in-house clusters do: a CA and
a broker certificate made here with openssl, PLAIN and SCRAM-SHA-512 users with generated
passwords. For trying livepulse's clients against a secured Kafka (tests/test_sasl_ssl.py).

It runs from the same pinned jars as `livepulse kafka up` (streams.tools.kafka.process) on ports
and a state directory of its own; the shared PLAINTEXT broker is never touched. Authentication only
(no ACLs): every authenticated user may do anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from streams.runtime.settings import Settings
from streams.tools.kafka import KafkaLocalError, template
from streams.tools.kafka.download import ensure_jars
from streams.tools.kafka.process import (
    StatePaths,
    cluster_id_of,
    java_command,
    pid_alive,
    spawn_detached,
    terminate,
)

#: The broker authenticates to itself over its own listener as this PLAIN user.
BROKER_USER: Final[str] = "broker"
PLAIN_USER: Final[str] = "livepulse-plain"
SCRAM_USER: Final[str] = "livepulse-scram"
_CERT_DAYS: Final[int] = 2


@dataclass(frozen=True)
class SecureBroker:
    """A running SASL_SSL broker: where it listens, the CA that signed it, its users."""

    bootstrap: str
    cafile: Path
    #: user -> (SASL mechanism, password)
    users: dict[str, tuple[str, str]]
    pid: int
    state_dir: Path

    def settings(self, user: str, **update: object) -> Settings:
        """livepulse settings that reach this broker as `user`."""
        mechanism, password = self.users[user]
        fields: dict[str, object] = {
            "bootstrap": self.bootstrap,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": mechanism,
            "sasl_username": user,
            "sasl_password": password,
            "ssl_cafile": self.cafile,
            **update,
        }
        return Settings(**fields)  # type: ignore[arg-type]


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(  # noqa: S603 - fixed argument list, no shell
        ["openssl", *args],  # noqa: S607 - openssl from PATH, as an operator would run it
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise KafkaLocalError(f"openssl {args[0]} failed: {done.stderr.strip()[-500:]}")


def make_certificates(directory: Path, store_password: str) -> tuple[Path, Path]:
    """A CA and a broker certificate for 127.0.0.1/localhost signed by it; return the CA's PEM
    and the broker's PKCS#12 keystore (key, certificate and CA chain)."""
    directory.mkdir(parents=True, exist_ok=True)
    days = str(_CERT_DAYS)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", days, "-subj", "/CN=livepulse test CA", cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
        "-subj", "/CN=localhost", cwd=directory,
    )  # fmt: skip
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "x509", "-req", "-in", "broker.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "broker.crt", "-days", days, "-extfile", "san.cnf",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "pkcs12", "-export", "-in", "broker.crt", "-inkey", "broker.key", "-certfile", "ca.crt",
        "-name", "broker", "-out", "broker.p12", "-passout", f"pass:{store_password}",
        cwd=directory,
    )  # fmt: skip
    for name in ("ca.key", "broker.key", "broker.p12"):
        os.chmod(directory / name, 0o600)
    return directory / "ca.crt", directory / "broker.p12"


def _jaas_string(value: str) -> str:
    return json.dumps(value)  # a double-quoted JAAS string (the passwords are URL-safe)


def _server_properties(
    paths: StatePaths, port: int, controller_port: int, keystore: Path, cafile: Path,
    store_password: str, plain_users: dict[str, str],
) -> str:  # fmt: skip
    users = " ".join(f"user_{name}={_jaas_string(pw)}" for name, pw in plain_users.items())
    plain_jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f"username={_jaas_string(BROKER_USER)} "
        f"password={_jaas_string(plain_users[BROKER_USER])} {users};"
    )
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
            f"listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=SASL_SSL://127.0.0.1:{port}",
            "inter.broker.listener.name=SASL_SSL",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
            "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol=PLAIN",
            f"listener.name.sasl_ssl.plain.sasl.jaas.config={plain_jaas}",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "ssl.keystore.type=PKCS12",
            f"ssl.keystore.location={keystore}",
            f"ssl.keystore.password={store_password}",
            f"ssl.key.password={store_password}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={cafile}",
            f"log.dirs={paths.data}",
            "default.replication.factor=1",
            "min.insync.replicas=1",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.num.partitions=4",
            "auto.create.topics.enable=true",
            "num.partitions=4",
            "group.initial.rebalance.delay.ms=0",
            "num.network.threads=2",
            "num.io.threads=2",
            "",
        ]
    )


def start_secure_broker(
    state_dir: Path, port: int, controller_port: int, *, timeout_s: float = 120.0
) -> SecureBroker:
    """Make certificates and users, format the storage, start the broker and wait until a
    SCRAM-SHA-512 client gets in; return it. `stop_secure_broker(broker)` stops it."""
    paths = StatePaths(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    libs = ensure_jars()
    store_password = secrets.token_urlsafe(18)
    cafile, keystore = make_certificates(state_dir / "tls", store_password)
    plain = {BROKER_USER: secrets.token_urlsafe(18), PLAIN_USER: secrets.token_urlsafe(18)}
    scram_password = secrets.token_urlsafe(18)
    paths.server_properties.write_text(
        _server_properties(paths, port, controller_port, keystore, cafile, store_password, plain),
        encoding="utf-8",
    )
    os.chmod(paths.server_properties, 0o600)
    paths.log4j_properties.write_text(template("log4j.properties"), encoding="utf-8")
    scram = f"SCRAM-SHA-512=[name={SCRAM_USER},password={scram_password}]"
    format_command = java_command(
        libs, paths, "kafka.tools.StorageTool",
        ["format", "-t", cluster_id_of(paths), "-c", str(paths.server_properties),
         "--add-scram", scram],
        heap="256m",
    )  # fmt: skip
    done = subprocess.run(  # noqa: S603 - fixed argument list, no shell
        format_command, capture_output=True, text=True, timeout=180, check=False
    )
    if done.returncode != 0:
        raise KafkaLocalError(f"formatting the secure broker's storage failed: {done.stderr}")
    command = java_command(libs, paths, "kafka.Kafka", [str(paths.server_properties)], "384m")
    pid = spawn_detached(command, paths.log)
    paths.pid.write_text(f"{pid}\n", encoding="utf-8")
    broker = SecureBroker(
        bootstrap=f"127.0.0.1:{port}",
        cafile=cafile,
        users={
            PLAIN_USER: ("PLAIN", plain[PLAIN_USER]),
            SCRAM_USER: ("SCRAM-SHA-512", scram_password),
        },
        pid=pid,
        state_dir=state_dir,
    )
    try:
        _wait_until_authenticated(broker, timeout_s)
    except BaseException:
        stop_secure_broker(broker)
        raise
    return broker


def _wait_until_authenticated(broker: SecureBroker, timeout_s: float) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    settings = broker.settings(SCRAM_USER)

    async def answers() -> bool:
        admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs())
        try:
            await admin.start()
            await admin.list_topics()
            return True
        except Exception:
            return False
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    deadline = time.monotonic() + timeout_s
    while not asyncio.run(answers()):
        if not pid_alive(broker.pid):
            log = (broker.state_dir / "broker.log").read_text(errors="replace")[-3000:]
            raise KafkaLocalError(f"the secure broker exited:\n{log}")
        if time.monotonic() > deadline:
            raise KafkaLocalError(f"the secure broker did not let a client in after {timeout_s}s")
        time.sleep(1.0)


def stop_secure_broker(broker: SecureBroker, timeout_s: float = 30.0) -> None:
    """Stop the broker (its state directory stays, for its log)."""
    terminate(broker.pid, timeout_s)
