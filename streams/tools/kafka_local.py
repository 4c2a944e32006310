"""The project's own local Apache Kafka broker (single-node KRaft): fetch, start, stop, inspect."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, Final, TypeVar

from schemas import TOPIC_BY_TYPE

KAFKA_VERSION: Final = "3.9.1"
SCALA_BINARY_VERSION: Final = "2.13"
HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 9092
DEFAULT_PARTITIONS: Final = 4
DEFAULT_START_TIMEOUT_S: Final = 120.0
DEFAULT_STOP_TIMEOUT_S: Final = 30.0
_MAVEN_TIMEOUT_S: Final = 1800.0
DEADLETTER_TOPIC: Final = "live.deadletter"
# Contract topics in first-seen order, then the dead-letter topic.
CONTRACT_TOPICS: Final[tuple[str, ...]] = (*dict.fromkeys(TOPIC_BY_TYPE.values()), DEADLETTER_TOPIC)

ENV_CACHE_DIR: Final = "LIVEPULSE_CACHE_DIR"
ENV_STATE_DIR: Final = "LIVEPULSE_KAFKA_STATE_DIR"
ENV_HEAP: Final = "LIVEPULSE_KAFKA_HEAP"
DEFAULT_HEAP: Final = "512m"

# Jars that must be on the classpath for `kafka.Kafka` and `kafka.tools.StorageTool`; a fetch
# missing one of them is treated as failed rather than discovered at start-up.
_REQUIRED_JAR_PREFIXES: Final = (
    f"kafka_{SCALA_BINARY_VERSION}-{KAFKA_VERSION}",
    f"kafka-clients-{KAFKA_VERSION}",
    f"kafka-server-{KAFKA_VERSION}",
    f"kafka-server-common-{KAFKA_VERSION}",
    f"kafka-metadata-{KAFKA_VERSION}",
    f"kafka-raft-{KAFKA_VERSION}",
    f"kafka-storage-{KAFKA_VERSION}",
    "scala-library-",
    "slf4j-reload4j-",
    "reload4j-",
)
_TOPIC_ALREADY_EXISTS: Final = 36
_METADATA_API_KEY: Final = 3
# Metadata v4: in every broker from 1.0 through 4.x, and carries the cluster id.
_METADATA_API_VERSION: Final = 4
_CLIENT_ID: Final = b"livepulse-kafka-local"

T = TypeVar("T")


class KafkaLocalError(RuntimeError):
    """The local broker could not be fetched, started, stopped or reached."""


@dataclass(frozen=True)
class ClusterMetadata:
    """What a broker says about its cluster in a metadata response."""

    cluster_id: str | None
    broker_ids: tuple[int, ...]
    topics: dict[str, int]  # non-internal topic name -> partition count


@dataclass(frozen=True)
class BrokerStatus:
    """The local broker as seen from its state directory and its port."""

    running: bool  # the process is alive and answers metadata requests
    pid: int | None  # the broker process, when alive
    bootstrap: str | None  # from the generated server.properties
    cluster_id: str | None
    state_dir: Path
    log_path: Path
    topics: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _StatePaths:
    """The files of one broker under its state directory."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def server_properties(self) -> Path:
        return self.root / "server.properties"

    @property
    def log4j_properties(self) -> Path:
        return self.root / "log4j.properties"

    @property
    def cluster_id(self) -> Path:
        return self.root / "cluster.id"

    @property
    def pid(self) -> Path:
        return self.root / "broker.pid"

    @property
    def log(self) -> Path:
        return self.root / "broker.log"

    @property
    def previous_log(self) -> Path:
        return self.root / "broker.log.1"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"


# ---------------------------------------------------------------------------------------------
# Locations


def cache_dir() -> Path:
    """Root of the download cache (`LIVEPULSE_CACHE_DIR`, default `~/.cache/livepulse`)."""
    override = os.environ.get(ENV_CACHE_DIR)
    return (
        Path(override).expanduser().resolve() if override else Path.home() / ".cache" / "livepulse"
    )


def libs_dir() -> Path:
    """Directory holding the pinned Kafka release's jars (the broker's classpath)."""
    return cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"


def state_dir() -> Path:
    """Broker state (`LIVEPULSE_KAFKA_STATE_DIR`, default `~/.local/state/livepulse/kafka`)."""
    override = os.environ.get(ENV_STATE_DIR)
    if override:
        # Absolute, because the broker's command line names its server.properties and that is
        # how a running broker is recognised from any working directory.
        return Path(override).expanduser().resolve()
    return Path.home() / ".local" / "state" / "livepulse" / "kafka"


def _paths() -> _StatePaths:
    return _StatePaths(state_dir())


def _say(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path` (serialises concurrent `up`/`down`/fetch)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _template(name: str) -> str:
    return (resources.files("streams.tools") / "kafka" / name).read_text(encoding="utf-8")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------
# Fetching the jars


def _jars_complete(libs: Path, marker: Path) -> bool:
    try:
        names = marker.read_text(encoding="utf-8").split()
    except OSError:
        return False
    return bool(names) and all((libs / name).is_file() for name in names)


def ensure_jars() -> Path:
    """Fetch the pinned Kafka jars from Maven Central once; return the libs directory."""
    libs = libs_dir()
    home = libs.parent
    marker = home / "fetched.txt"
    if _jars_complete(libs, marker):
        return libs
    with _file_lock(home / ".lock"):
        if _jars_complete(libs, marker):  # fetched by another process while we waited
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaLocalError(
                "Maven (`mvn`) is needed once to fetch the Kafka jars from Maven Central; "
                "install it (e.g. `apt-get install maven`) and retry"
            )
        _say(f"fetching Kafka {KAFKA_VERSION} jars from Maven Central (first run only)…")
        started = time.monotonic()
        pom = home / "pom.xml"
        pom.write_text(
            _template("pom.xml")
            .replace("@KAFKA_VERSION@", KAFKA_VERSION)
            .replace("@SCALA_BINARY_VERSION@", SCALA_BINARY_VERSION),
            encoding="utf-8",
        )
        partial = home / "libs.partial"
        # A private local repository: the cache holds everything, and a clean cache really
        # downloads. It is deleted after the copy, the jars in libs/ are all that is kept.
        maven_repo = home / "maven-repo"
        shutil.rmtree(partial, ignore_errors=True)
        command = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            f"-Dmaven.repo.local={maven_repo}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={partial}",
            "-DincludeScope=runtime",
        ]
        returncode, output = _run_maven(command, home, maven_repo)
        if returncode != 0:
            raise KafkaLocalError(
                f"Maven could not fetch the Kafka {KAFKA_VERSION} jars "
                f"(exit {returncode}):\n{output}"
            )
        jars = sorted(path.name for path in partial.glob("*.jar"))
        missing = [p for p in _REQUIRED_JAR_PREFIXES if not any(j.startswith(p) for j in jars)]
        if missing:
            raise KafkaLocalError(f"the Maven fetch lacks jars starting with {missing}")
        shutil.rmtree(libs, ignore_errors=True)
        partial.rename(libs)
        marker.write_text("\n".join(jars) + "\n", encoding="utf-8")
        shutil.rmtree(maven_repo, ignore_errors=True)
        size_mb = sum((libs / jar).stat().st_size for jar in jars) / 1e6
        _say(
            f"fetched {len(jars)} jars ({size_mb:.0f} MB) in "
            f"{time.monotonic() - started:.1f} s into {libs}"
        )
    return libs


def _run_maven(command: list[str], home: Path, maven_repo: Path) -> tuple[int, str]:
    """Run Maven's fetch; on a terminal, a bar of the bytes downloaded so far (the private
    repository's size). Its exit code and the last lines of its output."""
    from streams.tools.progress import bar

    output_path = home / "maven.out"
    deadline = time.monotonic() + _MAVEN_TIMEOUT_S
    with output_path.open("wb") as output, bar(desc="downloading", bytes_scale=True) as progress:
        process = subprocess.Popen(  # noqa: S603 - fixed argument list, no shell
            command, cwd=home, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
        )
        try:
            while process.poll() is None:
                if time.monotonic() > deadline:
                    raise KafkaLocalError("Maven did not finish fetching the Kafka jars in 30 min")
                if not progress.disable:
                    progress.update(_tree_bytes(maven_repo) - progress.n)
                time.sleep(0.5)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    text = output_path.read_text(encoding="utf-8", errors="replace")
    output_path.unlink(missing_ok=True)
    return process.returncode, "\n".join(text.splitlines()[-30:])


def _tree_bytes(root: Path) -> int:
    """The bytes of the files under `root` (files vanishing meanwhile are skipped)."""
    total = 0
    for directory, _, names in os.walk(root):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(directory, name)).st_size
    return total


# ---------------------------------------------------------------------------------------------
# Talking to a broker: one Metadata request over a plain socket (sync, no event loop, no logs)


class _Reader:
    """Reads big-endian Kafka protocol fields from a response buffer."""

    def __init__(self, buffer: bytes) -> None:
        self._buffer = buffer
        self._offset = 0

    def _take(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self._buffer, self._offset)
        self._offset += struct.calcsize(fmt)
        return value

    def int8(self) -> int:
        return int(self._take(">b"))

    def int16(self) -> int:
        return int(self._take(">h"))

    def int32(self) -> int:
        return int(self._take(">i"))

    def string(self) -> str | None:
        length = self.int16()
        if length < 0:
            return None
        raw = self._buffer[self._offset : self._offset + length]
        if len(raw) != length:
            raise ValueError("truncated Kafka string")
        self._offset += length
        return raw.decode("utf-8")


def _split_bootstrap(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    first = first.removeprefix("kafka://").removeprefix("PLAINTEXT://")
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"bootstrap must look like host:port, not {bootstrap!r}")
    return host.strip("[]"), int(port)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        chunks += chunk
    return bytes(chunks)


def _parse_metadata(payload: bytes, correlation_id: int) -> ClusterMetadata:
    reader = _Reader(payload)
    if reader.int32() != correlation_id:
        raise ValueError("unexpected correlation id in the metadata response")
    reader.int32()  # throttle_time_ms
    broker_ids = []
    for _ in range(reader.int32()):
        broker_ids.append(reader.int32())
        reader.string()  # host
        reader.int32()  # port
        reader.string()  # rack
    cluster_id = reader.string()
    reader.int32()  # controller_id
    topics: dict[str, int] = {}
    for _ in range(reader.int32()):
        reader.int16()  # error_code
        name = reader.string()
        internal = reader.int8() != 0
        partitions = reader.int32()
        for _ in range(partitions):
            reader.int16()  # error_code
            reader.int32()  # partition_index
            reader.int32()  # leader_id
            for _ in range(reader.int32()):  # replica_nodes
                reader.int32()
            for _ in range(reader.int32()):  # isr_nodes
                reader.int32()
        if name is not None and not internal:
            topics[name] = partitions
    return ClusterMetadata(cluster_id, tuple(sorted(broker_ids)), dict(sorted(topics.items())))


def fetch_metadata(bootstrap: str, timeout_s: float = 5.0) -> ClusterMetadata:
    """Ask the first bootstrap server for cluster metadata; OSError if it does not answer."""
    host, port = _split_bootstrap(bootstrap)
    correlation_id = int.from_bytes(os.urandom(3), "big")
    request = struct.pack(
        ">hhih", _METADATA_API_KEY, _METADATA_API_VERSION, correlation_id, len(_CLIENT_ID)
    )
    # topics = null (all topics), allow_auto_topic_creation = false
    request += _CLIENT_ID + struct.pack(">ib", -1, 0)
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.settimeout(timeout_s)
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        payload = _recv_exact(sock, size)
    try:
        return _parse_metadata(payload, correlation_id)
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise ConnectionError(f"{bootstrap} did not answer like a Kafka broker: {exc}") from exc


def _try_metadata(bootstrap: str, timeout_s: float) -> ClusterMetadata | None:
    try:
        metadata = fetch_metadata(bootstrap, timeout_s)
    except OSError:
        return None
    return metadata if metadata.broker_ids else None


def broker_answers(bootstrap: str, timeout_s: float) -> bool:
    """Whether a Kafka broker at `bootstrap` answers a metadata request within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        if _try_metadata(bootstrap, max(0.1, min(2.0, remaining))) is not None:
            return True
        if time.monotonic() + 0.2 >= deadline:
            return False
        time.sleep(0.2)


# ---------------------------------------------------------------------------------------------
# Topics (aiokafka's admin client)


def _run_sync(make_coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even when called inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coroutine())
    # Inside a running loop (an async test, say) asyncio.run is refused: use a private loop on
    # a helper thread, and block this one until it is done.
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(asyncio.run(make_coroutine()))
        except BaseException as exc:  # re-raised in the calling thread
            failure.append(exc)

    helper = threading.Thread(target=target, name="livepulse-kafka-local", daemon=True)
    helper.start()
    helper.join()
    if failure:
        raise failure[0]
    return outcome[0]


async def create_topics_async(
    bootstrap: str, names: Iterable[str], partitions: int, timeout_s: float = 30.0
) -> dict[str, int]:
    """Create topics (replication 1) unless they exist; return each one's partition count."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    wanted = list(dict.fromkeys(names))
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id=_CLIENT_ID.decode(),
        request_timeout_ms=int(timeout_s * 1000),
    )
    try:
        await admin.start()
        response = await admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in wanted]
        )
        failures = [
            f"{entry[0]}: error {entry[1]} {entry[2] if len(entry) > 2 else ''}".strip()
            for entry in response.topic_errors
            if entry[1] not in (0, _TOPIC_ALREADY_EXISTS)
        ]
        if failures:
            raise KafkaLocalError("could not create topics: " + "; ".join(failures))
        # A new topic reaches the broker's metadata cache a moment after the controller
        # commits it, so poll briefly until every partition is visible.
        deadline = time.monotonic() + timeout_s
        while True:
            described = await admin.describe_topics(wanted)
            counts = {
                str(topic["topic"]): len(topic["partitions"])
                for topic in described
                if topic["error_code"] == 0
            }
            if all(counts.get(name, 0) > 0 for name in wanted) or time.monotonic() > deadline:
                return {name: counts.get(name, 0) for name in wanted}
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


def create_topics(
    bootstrap: str, names: Iterable[str], partitions: int, timeout_s: float = 30.0
) -> dict[str, int]:
    """Sync `create_topics_async`: create missing topics, return each one's partition count."""
    wanted = list(names)
    return _run_sync(lambda: create_topics_async(bootstrap, wanted, partitions, timeout_s))


# ---------------------------------------------------------------------------------------------
# The broker process


def _pid_alive(pid: int) -> bool:
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child: look it up below
    else:
        return reaped == 0  # our own child (a broker started by this process): reaped if gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not _only_zombie_threads(pid)


def _only_zombie_threads(pid: int) -> bool:
    """Whether every thread of `pid` has exited (a zombie awaiting its parent's wait)."""
    # The state in /proc/PID/stat is the main thread's alone, and the JVM's main thread can
    # exit long before the process does: look at every thread.
    tasks = Path(f"/proc/{pid}/task")
    if not Path("/proc/self").exists():
        return False  # no /proc here; kill(pid, 0) is all there is
    try:
        threads = list(tasks.iterdir())
    except OSError:
        return True
    for thread in threads:
        try:
            state = (thread / "stat").read_text(encoding="utf-8").rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue  # exited while we looked
        if state not in ("Z", "X"):
            return False
    return True


def _is_our_broker(pid: int, paths: _StatePaths) -> bool:
    if not _pid_alive(pid):
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the pid file
    return b"kafka.Kafka" in args and str(paths.server_properties).encode() in args


def _running_pid(paths: _StatePaths) -> int | None:
    try:
        pid = int(paths.pid.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
    return pid if _is_our_broker(pid, paths) else None


def _configured_bootstrap(paths: _StatePaths) -> str | None:
    try:
        lines = paths.server_properties.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "advertised.listeners":
            for listener in value.split(","):
                if listener.strip().startswith("PLAINTEXT://"):
                    return listener.strip().removeprefix("PLAINTEXT://")
    return None


def _check_port_free(port: int, role: str, paths: _StatePaths) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Java binds with SO_REUSEADDR too, so sockets in TIME_WAIT do not count as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
            return
        except OSError:
            pass
    metadata = _try_metadata(f"{HOST}:{port}", 1.0)
    if metadata is not None:
        holder = (
            f"another Kafka broker (cluster id {metadata.cluster_id}) answers there, "
            f"not one started from {paths.root}"
        )
    else:
        holder = "another program is listening there"
    raise KafkaLocalError(
        f"the {role} port {HOST}:{port} is already in use: {holder}. Stop it, or choose other "
        f"ports with --port/--controller-port (`ss -ltnp 'sport = :{port}'` shows the owner)"
    )


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise KafkaLocalError(
            "Java 17 (or newer) is needed to run Kafka; install it "
            "(e.g. `apt-get install openjdk-17-jre-headless`) or set JAVA_HOME"
        )
    return found


def _java_command(
    libs: Path, paths: _StatePaths, main_class: str, args: Sequence[str], heap: str
) -> list[str]:
    return [
        _java(),
        f"-Xmx{heap}",
        "-Xms128m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j.configuration={paths.log4j_properties.as_uri()}",
        f"-Dkafka.logs.dir={paths.root}",
        "-cp",
        f"{libs}/*",
        main_class,
        *args,
    ]


def _cluster_id(paths: _StatePaths) -> str:
    """The cluster id of this state dir: kept in `cluster.id`, generated on first use."""
    with contextlib.suppress(OSError):
        kept = paths.cluster_id.read_text(encoding="utf-8").strip()
        if kept:
            return kept
    while True:  # Kafka's own format: 16 random bytes, URL-safe base64, no padding
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not candidate.startswith("-"):  # would read as a command-line option
            break
    paths.cluster_id.write_text(candidate + "\n", encoding="utf-8")
    return candidate


def _write_configs(paths: _StatePaths, port: int, controller_port: int, partitions: int) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    server = Template(_template("server.properties")).substitute(
        port=port,
        controller_port=controller_port,
        log_dir=str(paths.data),
        partitions=partitions,
    )
    paths.server_properties.write_text(server, encoding="utf-8")
    paths.log4j_properties.write_text(_template("log4j.properties"), encoding="utf-8")


def _format_storage(paths: _StatePaths, libs: Path) -> None:
    if (paths.data / "meta.properties").is_file():
        return
    cluster_id = _cluster_id(paths)
    _say(f"formatting storage (cluster id {cluster_id})…")
    command = _java_command(
        libs,
        paths,
        "kafka.tools.StorageTool",
        ["format", "-t", cluster_id, "-c", str(paths.server_properties), "--ignore-formatted"],
        heap="256m",
    )
    try:
        done = subprocess.run(  # noqa: S603 - fixed argument list, no shell
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise KafkaLocalError("formatting the Kafka storage took more than 180 s") from exc
    if done.returncode != 0:
        output = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise KafkaLocalError(f"formatting the Kafka storage failed:\n{output}")


def _spawn_detached(command: list[str], log_path: Path) -> int:
    """Start `command` in its own session, output to `log_path`; return its pid."""
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        # posix_spawn rather than Popen: there is no Popen object to outlive (and warn about)
        # a broker that is meant to keep running after this process exits.
        return os.posix_spawn(
            command[0],
            command,
            dict(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log_fd, 1),
                (os.POSIX_SPAWN_DUP2, log_fd, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(log_fd)


def _terminate(pid: int, timeout_s: float) -> None:
    """SIGTERM the broker's process group, then SIGKILL it after `timeout_s`."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return
            time.sleep(0.1)
        if sig is signal.SIGTERM:
            _say(f"broker (pid {pid}) ignored SIGTERM for {timeout_s:.0f} s; sending SIGKILL")
    raise KafkaLocalError(f"broker process {pid} survived SIGKILL")


def _wait_until_answers(pid: int, bootstrap: str, paths: _StatePaths, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if not _pid_alive(pid):
            raise KafkaLocalError(
                f"the broker (pid {pid}) exited during start-up; the end of {paths.log}:\n"
                + _tail(paths.log)
            )
        if _try_metadata(bootstrap, 1.0) is not None:
            return
        if time.monotonic() > deadline:
            _terminate(pid, 10.0)
            paths.pid.unlink(missing_ok=True)
            raise KafkaLocalError(
                f"the broker did not answer at {bootstrap} within {timeout_s:.0f} s and was "
                f"stopped; the end of {paths.log}:\n" + _tail(paths.log)
            )
        time.sleep(0.2)


def _ensure_contract_topics(bootstrap: str, partitions: int) -> None:
    counts = create_topics(bootstrap, CONTRACT_TOPICS, partitions)
    for name, count in counts.items():
        if count != partitions:
            _say(
                f"note: {name} has {count} partitions, not {partitions}; left as is "
                "(`livepulse kafka down --purge` deletes the data to start over)"
            )


def ensure_up(
    port: int = DEFAULT_PORT,
    partitions: int = DEFAULT_PARTITIONS,
    *,
    controller_port: int | None = None,
    timeout_s: float = DEFAULT_START_TIMEOUT_S,
) -> str:
    """Start the local broker unless it runs, create the contract topics; return the bootstrap.

    The controller listens on `controller_port` (default `port + 1`). Harmless to repeat.
    """
    controller_port = port + 1 if controller_port is None else controller_port
    if port == controller_port:
        raise KafkaLocalError("the bootstrap and controller ports must differ")
    if partitions < 1:
        raise KafkaLocalError("partitions must be at least 1")
    paths = _paths()
    bootstrap = f"{HOST}:{port}"
    paths.root.mkdir(parents=True, exist_ok=True)
    with _file_lock(paths.lock):
        pid = _running_pid(paths)
        if pid is not None:
            running_at = _configured_bootstrap(paths)
            if running_at != bootstrap:
                raise KafkaLocalError(
                    f"the broker of {paths.root} already runs at {running_at} (pid {pid}); "
                    "run `livepulse kafka down` first to move it"
                )
            _wait_until_answers(pid, bootstrap, paths, timeout_s)
            _say(f"broker already running at {bootstrap} (pid {pid})")
        else:
            paths.pid.unlink(missing_ok=True)
            _check_port_free(port, "bootstrap", paths)
            _check_port_free(controller_port, "controller", paths)
            libs = ensure_jars()
            _write_configs(paths, port, controller_port, partitions)
            _format_storage(paths, libs)
            if paths.log.exists():
                paths.log.replace(paths.previous_log)
            heap = os.environ.get(ENV_HEAP, DEFAULT_HEAP)
            command = _java_command(
                libs, paths, "kafka.Kafka", [str(paths.server_properties)], heap=heap
            )
            started = time.monotonic()
            pid = _spawn_detached(command, paths.log)
            paths.pid.write_text(f"{pid}\n", encoding="utf-8")
            _wait_until_answers(pid, bootstrap, paths, timeout_s)
            _say(f"broker up at {bootstrap} in {time.monotonic() - started:.1f} s (pid {pid})")
        _ensure_contract_topics(bootstrap, partitions)
    return bootstrap


def _purge(paths: _StatePaths) -> None:
    # Only what this module wrote: the state dir may be a user-chosen path.
    shutil.rmtree(paths.data, ignore_errors=True)
    for path in (
        paths.cluster_id,
        paths.server_properties,
        paths.log4j_properties,
        paths.pid,
        paths.log,
        paths.previous_log,
    ):
        path.unlink(missing_ok=True)


def stop(purge: bool = False, *, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> bool:
    """Stop the local broker (SIGTERM, SIGKILL after `timeout_s`); True if it was running.

    With `purge`, also delete its data, cluster id, configuration and logs.
    """
    paths = _paths()
    if not paths.root.exists():
        return False
    with _file_lock(paths.lock):
        pid = _running_pid(paths)
        if pid is not None:
            _terminate(pid, timeout_s)
        paths.pid.unlink(missing_ok=True)
        if purge:
            _purge(paths)
    if purge:
        paths.lock.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            paths.root.rmdir()  # only if nothing else is left in it
    return pid is not None


def status(timeout_s: float = 5.0) -> BrokerStatus:
    """Describe the local broker: process, bootstrap, cluster id and topics."""
    paths = _paths()
    pid = _running_pid(paths)
    bootstrap = _configured_bootstrap(paths)
    metadata = None
    if pid is not None and bootstrap is not None:
        metadata = _try_metadata(bootstrap, timeout_s)
    return BrokerStatus(
        running=metadata is not None,
        pid=pid,
        bootstrap=bootstrap,
        cluster_id=metadata.cluster_id if metadata else None,
        state_dir=paths.root,
        log_path=paths.log,
        topics=metadata.topics if metadata else {},
    )


def is_running() -> bool:
    """Whether the local broker's process is alive and answers on its port."""
    return status(timeout_s=2.0).running
