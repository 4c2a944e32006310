"""The pinned Apache Kafka release's jars, fetched once from Maven Central into the cache."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Final

from streams.tools.kafka import KafkaLocalError, file_lock, say, template

KAFKA_VERSION: Final = "3.9.1"
SCALA_BINARY_VERSION: Final = "2.13"
ENV_CACHE_DIR: Final = "LIVEPULSE_CACHE_DIR"
_MAVEN_TIMEOUT_S: Final = 1800.0

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


def cache_dir() -> Path:
    """Root of the download cache (`LIVEPULSE_CACHE_DIR`, default `~/.cache/livepulse`)."""
    override = os.environ.get(ENV_CACHE_DIR)
    return (
        Path(override).expanduser().resolve() if override else Path.home() / ".cache" / "livepulse"
    )


def libs_dir() -> Path:
    """Directory holding the pinned Kafka release's jars (the broker's classpath)."""
    return cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"


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
    with file_lock(home / ".lock"):
        if _jars_complete(libs, marker):  # fetched by another process while we waited
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaLocalError(
                "Maven (`mvn`) is needed once to fetch the Kafka jars from Maven Central; "
                "install it (e.g. `apt-get install maven`) and retry"
            )
        say(f"fetching Kafka {KAFKA_VERSION} jars from Maven Central (first run only)…")
        started = time.monotonic()
        pom = home / "pom.xml"
        pom.write_text(
            template("pom.xml")
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
        say(
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
