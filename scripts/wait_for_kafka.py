#!/usr/bin/env python3
"""Wait until a Kafka broker answers, then run the given command (the worker's container entry).

    wait-for-kafka [--bootstrap HOST:PORT[,HOST:PORT...]] [--timeout SECONDS] [-- COMMAND ...]

A TCP connect is not enough: the broker's port opens before it can serve clients, so this
sends a Kafka ApiVersions request (v0, which every broker release accepts) and waits for a
well-formed answer with no error. It retries until the deadline, then exits 1.

Standard library only, on purpose, while everything else asks a broker through aiokafka's admin
client (streams/tools/kafka/admin.py): the image copies this file to /usr/local/bin as a bare
script, outside the installed package, and runs it in front of every container command, so it
must not depend on livepulse or its dependencies being importable (it also runs with any python3
outside the image: `python scripts/wait_for_kafka.py --bootstrap 127.0.0.1:9094`); and its one
question, "does a broker answer", is a fixed ApiVersions v0 request that every Kafka release
accepts, for which a client library would add start-up time and log noise but no answer.
"""

from __future__ import annotations

import argparse
import itertools
import os
import socket
import struct
import sys
import time
from collections.abc import Sequence

API_VERSIONS_KEY = 18
API_VERSIONS_VERSION = 0
CLIENT_ID = b"livepulse-wait"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


def parse_bootstrap(bootstrap: str) -> list[tuple[str, int]]:
    """Split `host:port[,host:port...]` (IPv6 as `[addr]:port`) into (host, port) pairs."""
    servers: list[tuple[str, int]] = []
    for item in bootstrap.split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"bootstrap server {item!r} is not HOST:PORT")
        servers.append((host.strip("[]"), int(port)))
    if not servers:
        raise ValueError("no bootstrap server given")
    return servers


def api_versions_request(correlation_id: int) -> bytes:
    """An ApiVersions v0 request, length-prefixed as on the wire."""
    body = struct.pack(
        ">hhih", API_VERSIONS_KEY, API_VERSIONS_VERSION, correlation_id, len(CLIENT_ID)
    )
    body += CLIENT_ID
    return struct.pack(">i", len(body)) + body


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection mid-answer")
        chunks += chunk
    return bytes(chunks)


def probe(host: str, port: int, timeout_seconds: float, correlation_id: int = 1) -> None:
    """Raise unless the broker at host:port answers ApiVersions with error code 0."""
    with socket.create_connection((host, port), timeout=timeout_seconds) as sock:
        sock.settimeout(timeout_seconds)
        sock.sendall(api_versions_request(correlation_id))
        (size,) = struct.unpack(">i", _read_exactly(sock, 4))
        if size < 6 or size > 1_000_000:
            raise ConnectionError(f"implausible ApiVersions answer size {size}")
        answer = _read_exactly(sock, size)
    answered_id, error_code = struct.unpack(">ih", answer[:6])
    if answered_id != correlation_id:
        raise ConnectionError(f"answer to request {answered_id}, expected {correlation_id}")
    if error_code != 0:
        raise ConnectionError(f"ApiVersions error code {error_code}")


def wait_for_kafka(
    servers: Sequence[tuple[str, int]],
    timeout_seconds: float,
    interval_seconds: float = 1.0,
) -> bool:
    """Probe the servers in turn until one answers (True) or the deadline passes (False)."""
    deadline = time.monotonic() + timeout_seconds
    last_error = "not tried"
    for attempt in itertools.count(1):
        for host, port in servers:
            remaining = deadline - time.monotonic()
            try:
                probe(host, port, max(0.5, min(5.0, remaining)), correlation_id=attempt)
            except (OSError, ValueError, struct.error) as exc:
                last_error = f"{host}:{port}: {exc}"
            else:
                sys.stderr.write(f"wait-for-kafka: {host}:{port} answers (attempt {attempt})\n")
                return True
        if time.monotonic() + interval_seconds > deadline:
            sys.stderr.write(
                f"wait-for-kafka: no broker answered within {timeout_seconds:g} s "
                f"({attempt} attempts; last: {last_error})\n"
            )
            return False
        time.sleep(interval_seconds)
    return False  # pragma: no cover - itertools.count never ends


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in args_in:
        split = args_in.index("--")
        args_in, command = args_in[:split], args_in[split + 1 :]
    parser = argparse.ArgumentParser(
        prog="wait-for-kafka",
        description="Wait until a Kafka broker answers, then run the command given after --.",
    )
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("LIVEPULSE_BOOTSTRAP", DEFAULT_BOOTSTRAP),
        help="HOST:PORT[,HOST:PORT...] (default: $LIVEPULSE_BOOTSTRAP or %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=float(os.environ.get("LIVEPULSE_WAIT_TIMEOUT_SECONDS", "120")),
        help="seconds to keep trying (default: $LIVEPULSE_WAIT_TIMEOUT_SECONDS or 120)",
    )
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between tries")
    args = parser.parse_args(args_in)
    try:
        servers = parse_bootstrap(args.bootstrap)
    except ValueError as exc:
        parser.error(str(exc))
    if not wait_for_kafka(servers, args.timeout, args.interval):
        return 1
    if command:
        sys.stdout.flush()
        sys.stderr.flush()
        # Replace this process so the command gets the signals (docker stop) directly.
        os.execvp(command[0], command)  # noqa: S606 - argv list from the container's own config
    return 0


if __name__ == "__main__":
    sys.exit(main())
