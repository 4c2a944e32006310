"""The local single-node KRaft broker as a process: configure, format, start, stop, inspect."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Final

from streams.tools.kafka import KafkaLocalError, file_lock, say, template
from streams.tools.kafka.admin import contract_topics, create_topics, try_metadata
from streams.tools.kafka.download import ensure_jars

HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 9092
DEFAULT_PARTITIONS: Final = 4
DEFAULT_START_TIMEOUT_S: Final = 120.0
DEFAULT_STOP_TIMEOUT_S: Final = 30.0

ENV_STATE_DIR: Final = "LIVEPULSE_KAFKA_STATE_DIR"
ENV_HEAP: Final = "LIVEPULSE_KAFKA_HEAP"
DEFAULT_HEAP: Final = "512m"


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
class StatePaths:
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


def state_dir() -> Path:
    """Broker state (`LIVEPULSE_KAFKA_STATE_DIR`, default `~/.local/state/livepulse/kafka`)."""
    override = os.environ.get(ENV_STATE_DIR)
    if override:
        # Absolute, because the broker's command line names its server.properties and that is
        # how a running broker is recognised from any working directory.
        return Path(override).expanduser().resolve()
    return Path.home() / ".local" / "state" / "livepulse" / "kafka"


def _paths() -> StatePaths:
    return StatePaths(state_dir())


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------
# The broker process


def pid_alive(pid: int) -> bool:
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


def _is_our_broker(pid: int, paths: StatePaths) -> bool:
    if not pid_alive(pid):
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the pid file
    return b"kafka.Kafka" in args and str(paths.server_properties).encode() in args


def _running_pid(paths: StatePaths) -> int | None:
    try:
        pid = int(paths.pid.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
    return pid if _is_our_broker(pid, paths) else None


def _configured_bootstrap(paths: StatePaths) -> str | None:
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


def _check_port_free(port: int, role: str, paths: StatePaths) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Java binds with SO_REUSEADDR too, so sockets in TIME_WAIT do not count as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
            return
        except OSError:
            pass
    metadata = try_metadata(f"{HOST}:{port}", 1.0)
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


def java() -> str:
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


def java_command(
    libs: Path, paths: StatePaths, main_class: str, args: Sequence[str], heap: str
) -> list[str]:
    return [
        java(),
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


def cluster_id_of(paths: StatePaths) -> str:
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


def _write_configs(paths: StatePaths, port: int, controller_port: int, partitions: int) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    server = Template(template("server.properties")).substitute(
        port=port,
        controller_port=controller_port,
        log_dir=str(paths.data),
        partitions=partitions,
    )
    paths.server_properties.write_text(server, encoding="utf-8")
    paths.log4j_properties.write_text(template("log4j.properties"), encoding="utf-8")


def _format_storage(paths: StatePaths, libs: Path) -> None:
    if (paths.data / "meta.properties").is_file():
        return
    cluster_id = cluster_id_of(paths)
    say(f"formatting storage (cluster id {cluster_id})…")
    command = java_command(
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


def spawn_detached(command: list[str], log_path: Path) -> int:
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


def terminate(pid: int, timeout_s: float) -> None:
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
            if not pid_alive(pid):
                return
            time.sleep(0.1)
        if sig is signal.SIGTERM:
            say(f"broker (pid {pid}) ignored SIGTERM for {timeout_s:.0f} s; sending SIGKILL")
    raise KafkaLocalError(f"broker process {pid} survived SIGKILL")


def _wait_until_answers(pid: int, bootstrap: str, paths: StatePaths, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if not pid_alive(pid):
            raise KafkaLocalError(
                f"the broker (pid {pid}) exited during start-up; the end of {paths.log}:\n"
                + _tail(paths.log)
            )
        if try_metadata(bootstrap, 1.0) is not None:
            return
        if time.monotonic() > deadline:
            terminate(pid, 10.0)
            paths.pid.unlink(missing_ok=True)
            raise KafkaLocalError(
                f"the broker did not answer at {bootstrap} within {timeout_s:.0f} s and was "
                f"stopped; the end of {paths.log}:\n" + _tail(paths.log)
            )
        time.sleep(0.2)


def _ensure_contract_topics(bootstrap: str, partitions: int) -> None:
    counts = create_topics(bootstrap, contract_topics(), partitions)
    for name, count in counts.items():
        if count != partitions:
            say(
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
    with file_lock(paths.lock):
        pid = _running_pid(paths)
        if pid is not None:
            running_at = _configured_bootstrap(paths)
            if running_at != bootstrap:
                raise KafkaLocalError(
                    f"the broker of {paths.root} already runs at {running_at} (pid {pid}); "
                    "run `livepulse kafka down` first to move it"
                )
            _wait_until_answers(pid, bootstrap, paths, timeout_s)
            say(f"broker already running at {bootstrap} (pid {pid})")
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
            command = java_command(
                libs, paths, "kafka.Kafka", [str(paths.server_properties)], heap=heap
            )
            started = time.monotonic()
            pid = spawn_detached(command, paths.log)
            paths.pid.write_text(f"{pid}\n", encoding="utf-8")
            _wait_until_answers(pid, bootstrap, paths, timeout_s)
            say(f"broker up at {bootstrap} in {time.monotonic() - started:.1f} s (pid {pid})")
        _ensure_contract_topics(bootstrap, partitions)
    return bootstrap


def _purge(paths: StatePaths) -> None:
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
    with file_lock(paths.lock):
        pid = _running_pid(paths)
        if pid is not None:
            terminate(pid, timeout_s)
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
        metadata = try_metadata(bootstrap, timeout_s)
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
