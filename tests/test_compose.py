"""Checks of the Docker deployment (compose file, Dockerfile, deploy/) without a Docker engine.

What a machine with no engine can check: the compose file against the official compose-spec
JSON schema (vendored in deploy/), pinned images, files the build and the mounts need, the
CLI sub-commands the containers run, start-up order, the topics kafka-init creates, the
Kafka listeners, the Prometheus scrape target and rules, Grafana's provisioning, worker
scaling, .env.example, and the broker wait script.
What it cannot: building the image, starting the containers (deploy/README.md).
"""

from __future__ import annotations

import argparse
import base64
import copy
import fnmatch
import importlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import jsonschema
import pytest
import yaml

from schemas import TOPIC_BY_TYPE
from streams.cli import COMMAND_MODULES

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
COMPOSE_SCHEMA = ROOT / "deploy" / "compose-spec.schema.json"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
PROMETHEUS_RULES = ROOT / "deploy" / "prometheus" / "rules"
GRAFANA = ROOT / "deploy" / "grafana"
CREATE_TOPICS_SCRIPT = ROOT / "deploy" / "kafka" / "create-topics.sh"
WAIT_SCRIPT = ROOT / "scripts" / "wait_for_kafka.py"

SERVICES = {"kafka", "kafka-init", "worker", "worker-extra", "replayer", "prometheus", "grafana"}
DEADLETTER_TOPIC = "live.deadletter"  # docs/design.md, "Kafka"
WEB_PORT = 6066
INTERNAL_BOOTSTRAP = "kafka:9092"
PROJECT_IMAGE = "livepulse:local"
# Set by compose itself (the project name), never by the user.
COMPOSE_OWN_VARIABLES = {"COMPOSE_PROJECT_NAME"}
DEPENDS_ON_CONDITIONS = {
    "service_started",
    "service_healthy",
    "service_completed_successfully",
}


def missing_piece(reason: str) -> NoReturn:
    """Skip locally while a teammate's piece is not written yet; fail under CI, never skip."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


# --- compose variable interpolation ---

# The forms the compose spec defines: $$ (a literal $), ${VAR}, ${VAR:-default},
# ${VAR-default}, ${VAR:?error}, ${VAR?error}, ${VAR:+replacement}, ${VAR+replacement}, $VAR.
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<invalid>))"
)


def interpolate_text(text: str, env: dict[str, str]) -> str:
    """Substitute compose variables in one string as `docker compose` would."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["named"]:
            return env.get(match["named"], "")
        if match["braced"] is None:
            raise ValueError(f"invalid interpolation in {text!r}")
        name, op, arg = match["braced"], match["op"], match["arg"] or ""
        value = env.get(name)
        if op is None:
            return value or ""
        unset_or_empty = value is None or (op.startswith(":") and value == "")
        if op.endswith("-"):
            return arg if unset_or_empty else str(value)
        if op.endswith("?"):
            if unset_or_empty:
                raise ValueError(f"required variable {name} is missing: {arg}")
            return str(value)
        return "" if unset_or_empty else arg  # the :+ / + forms

    return _VARIABLE.sub(substitute, text)


def interpolate(node: Any, env: dict[str, str]) -> Any:
    """Interpolate every string value in a parsed compose document (keys are left alone)."""
    if isinstance(node, str):
        return interpolate_text(node, env)
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    return node


def referenced_variables(text: str) -> dict[str, str | None]:
    """Variables a compose file reads, each with its `:-` default (None when it has none)."""
    found: dict[str, str | None] = {}
    for match in _VARIABLE.finditer(text):
        name = match["braced"] or match["named"]
        if name:
            default = match["arg"] if match["op"] in (":-", "-") else None
            found.setdefault(name, default)
    return found


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f"{path.name}: not NAME=value: {line!r}"
        values[name.strip()] = value.strip()
    return values


def yaml_without_comments(path: Path) -> str:
    """The file's text with comment lines dropped (comments may mention ${...} freely)."""
    return "\n".join(
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if not line.lstrip().startswith("#")
    )


# --- Dockerfile reading ---


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


def exec_form(arguments: str) -> list[str]:
    """The JSON array of an exec-form ENTRYPOINT/CMD (shell form is a failure here)."""
    value = json.loads(arguments)
    assert isinstance(value, list), f"not exec form: {arguments}"
    assert all(isinstance(item, str) for item in value), arguments
    return value


def dockerignore_excludes(relative: str, patterns: list[str]) -> bool:
    """Whether .dockerignore leaves `relative` out of the build context (last match wins)."""
    excluded = False
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = fnmatch.translate(pattern.replace("**/", "*"))
        if any(re.match(regex, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


# --- fixtures ---


@pytest.fixture(scope="module")
def raw_compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def compose(raw_compose: dict[str, Any]) -> dict[str, Any]:
    """The compose document as `docker compose` sees it with no .env: every default applied."""
    document: dict[str, Any] = interpolate(copy.deepcopy(raw_compose), env={})
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return dockerfile_instructions(DOCKERFILE)


@pytest.fixture(scope="module")
def wait_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wait_for_kafka", WAIT_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as strings, from either the mapping or the list form."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def uses_project_image(service: dict[str, Any]) -> bool:
    return "build" in service or service.get("image") == PROJECT_IMAGE


def container_argv(service: dict[str, Any], dockerfile: list[tuple[str, str]]) -> list[str]:
    """The argv a container of the project's image runs (compose overrides, else the image's)."""
    image_entrypoint = next(exec_form(a) for k, a in reversed(dockerfile) if k == "ENTRYPOINT")
    image_cmd = next(exec_form(a) for k, a in reversed(dockerfile) if k == "CMD")
    entrypoint = service.get("entrypoint", image_entrypoint)
    if isinstance(entrypoint, str):
        entrypoint = shlex.split(entrypoint)
    # Compose resets the image's CMD when it overrides the entrypoint.
    default_cmd = image_cmd if "entrypoint" not in service else []
    command = service.get("command", default_cmd)
    if isinstance(command, str):
        command = shlex.split(command)
    return [*entrypoint, *command]


# --- the compose file as a whole ---


def test_compose_file_declares_the_stack(raw_compose: dict[str, Any]) -> None:
    assert "version" not in raw_compose, "the compose spec has no version key; drop it"
    assert set(raw_compose["services"]) == SERVICES
    assert raw_compose.get("name") == "livepulse"


def test_compose_file_is_valid_against_the_compose_spec_schema(
    raw_compose: dict[str, Any], compose: dict[str, Any]
) -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    # The spec's schema is draft-07 (its $schema URL lacks the "#" jsonschema keys on).
    assert schema["$schema"].startswith("https://json-schema.org/draft-07/schema")
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    for label, document in (("as written", raw_compose), ("interpolated", compose)):
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
        assert not errors, f"{label}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
        )
    # The schema must be able to say no, or the check above proves nothing.
    broken = copy.deepcopy(compose)
    broken["services"]["worker"]["depends_on"]["kafka"]["condition"] = "service_ready"
    broken["services"]["worker"]["restart_policy"] = "always"
    assert len(list(validator.iter_errors(broken))) >= 2


def test_images_are_pinned(
    services: dict[str, dict[str, Any]], dockerfile: list[tuple[str, str]]
) -> None:
    pinned = re.compile(r"^[a-z0-9][a-z0-9._/-]*:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$")
    for name, service in services.items():
        image = service.get("image")
        if uses_project_image(service):
            # Built here, never pulled: a fixed local tag, so every service shares one image.
            assert image == PROJECT_IMAGE, name
            continue
        assert image, f"{name}: neither image nor build"
        match = pinned.match(image)
        assert match, f"{name}: image {image!r} has no tag"
        tag = match["tag"]
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not a release tag"
    for keyword, arguments in dockerfile:
        if keyword == "FROM":
            base = arguments.split()[0]
            assert re.fullmatch(r"python:3\.11\.\d+-slim(-bookworm)?", base), base


def test_kafka_images_are_the_design_release(services: dict[str, dict[str, Any]]) -> None:
    # docs/design.md: Kafka 3.9.1 (4.x drops protocol versions aiokafka and faust use).
    assert services["kafka"]["image"] == "apache/kafka:3.9.1"
    assert services["kafka-init"]["image"] == services["kafka"]["image"]


def test_build_contexts_and_dockerfiles_exist(services: dict[str, dict[str, Any]]) -> None:
    builds = [s["build"] for s in services.values() if "build" in s]
    assert builds, "no service builds the project image"
    for build in builds:
        if isinstance(build, str):
            build = {"context": build}
        context = (ROOT / build.get("context", ".")).resolve()
        assert context.is_dir(), context
        assert (context / build.get("dockerfile", "Dockerfile")).is_file()


def test_bind_mounts_exist_and_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used: set[str] = set()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):
                source, kind = volume.get("source", ""), volume.get("type", "volume")
            elif ":" not in volume:
                # A bare container path: an anonymous volume, one per container (replica).
                assert volume.startswith("/"), f"{name}: {volume}"
                continue
            else:
                source = volume.split(":")[0]
                kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            if kind == "bind":
                assert source.startswith("./"), f"{name}: bind mount {source} outside the repo"
                path = ROOT / source
                assert path.is_file() or path.is_dir(), f"{name}: {source} does not exist"
                if path.is_dir():
                    assert any(path.iterdir()), f"{name}: {source} is empty"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
    assert used == declared, f"declared but unused volumes: {declared - used}"


def test_published_ports_are_bound_to_loopback(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name}: {port}"


def test_depends_on_uses_conditions_in_start_order(
    services: dict[str, dict[str, Any]], dockerfile: list[tuple[str, str]]
) -> None:
    image_has_healthcheck = any(k == "HEALTHCHECK" for k, _ in dockerfile)
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on must be the long form"
        for target, rule in depends_on.items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = rule.get("condition")
            assert condition in DEPENDS_ON_CONDITIONS, f"{name} -> {target}: {condition}"
            if condition == "service_healthy":
                has_check = "healthcheck" in services[target] or (
                    uses_project_image(services[target]) and image_has_healthcheck
                )
                assert has_check, f"{name} waits for {target} to be healthy; it has no check"
                assert not services[target].get("healthcheck", {}).get("disable", False)
            if condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} is one-shot"
    # `up --wait` fails on any container that exits, even with 0: the only one-shot is
    # kafka-init, which others wait for (service_completed_successfully) so --wait accepts it.
    one_shots = {name for name, s in services.items() if s.get("restart", "no") == "no"}
    assert one_shots == {"kafka-init"}

    def conditions(name: str) -> dict[str, str]:
        return {t: r["condition"] for t, r in services[name].get("depends_on", {}).items()}

    assert conditions("kafka-init") == {"kafka": "service_healthy"}
    assert conditions("worker") == {
        "kafka": "service_healthy",
        "kafka-init": "service_completed_successfully",
    }
    assert conditions("worker-extra") == conditions("worker")
    assert conditions("replayer") == {"worker": "service_healthy"}
    # The replayer stays up once it has replayed (healthy), so `up --wait` can succeed.
    assert services["replayer"]["restart"] == "unless-stopped"
    assert "replay-once" in services["replayer"]["entrypoint"]

    # No cycles: compose refuses them, so make sure a later edit cannot introduce one.
    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"depends_on cycle: {' -> '.join((*path, name))}"
        for target in services[name].get("depends_on", {}):
            visit(target, (*path, name))

    for name in services:
        visit(name, ())


# --- the project's image and what runs in it ---


def test_dockerfile_runs_livepulse_as_non_root(dockerfile: list[tuple[str, str]]) -> None:
    keywords = [k for k, _ in dockerfile]
    args = {k: a for k, a in dockerfile}  # the last of each kind
    assert keywords[0] == "FROM"
    assert args["USER"] not in ("root", "0", "0:0"), "the image must not run as root"
    assert exec_form(args["ENTRYPOINT"]) == ["livepulse"]
    assert exec_form(args["CMD"]) == ["worker"]
    assert str(WEB_PORT) in args["EXPOSE"].split()
    assert any(k == "RUN" and re.search(r"\bpip install \.(\s|$)", a) for k, a in dockerfile)
    healthcheck = args["HEALTHCHECK"]
    assert f"http://127.0.0.1:{WEB_PORT}/status" in healthcheck
    assert "urllib.request" in healthcheck and "curl" not in healthcheck
    assert "CMD [" in healthcheck, "exec form, so no shell is needed"
    assert any(k == "COPY" and "fixtures" in a.split()[0] for k, a in dockerfile)


def test_dockerfile_copies_only_files_that_exist_and_reach_the_context(
    dockerfile: list[tuple[str, str]],
) -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for keyword, arguments in dockerfile:
        if keyword not in ("COPY", "ADD"):
            continue
        tokens = [t for t in arguments.split() if not t.startswith("--")]
        assert "--from" not in arguments, "single-stage image"
        sources = tokens[:-1]
        assert sources, arguments
        for source in sources:
            relative = source.rstrip("/")
            if any(ch in relative for ch in "*?["):
                # An optional file (README.md*): may match nothing, never an ignored file.
                for match in ROOT.glob(relative):
                    rel = match.relative_to(ROOT).as_posix()
                    assert not dockerignore_excludes(rel, patterns), f".dockerignore drops {rel}"
                continue
            assert (ROOT / relative).exists(), f"COPY source {source} does not exist"
            assert not dockerignore_excludes(relative, patterns), f".dockerignore drops {source}"
    assert dockerignore_excludes(".venv/bin/python", patterns)
    assert dockerignore_excludes(".env", patterns)
    assert dockerignore_excludes(".git/HEAD", patterns)


def test_containers_run_real_cli_sub_commands(
    services: dict[str, dict[str, Any]], dockerfile: list[tuple[str, str]]
) -> None:
    image_cmd = next(exec_form(a) for k, a in dockerfile if k == "CMD")
    assert image_cmd[0] in COMMAND_MODULES
    runs = {}
    for name, service in services.items():
        if not uses_project_image(service):
            continue
        argv = container_argv(service, dockerfile)
        assert "livepulse" in argv, f"{name}: {argv} does not run livepulse"
        at = argv.index("livepulse")
        sub_command = argv[at + 1]
        assert sub_command in COMMAND_MODULES, f"{name}: `livepulse {sub_command}` is no command"
        runs[name] = argv[at + 1 :]
    assert runs["worker"] == runs["worker-extra"] == ["worker"]
    assert runs["replayer"][0] == "replay"


def test_one_build_serves_every_service_of_the_project_image(
    services: dict[str, dict[str, Any]],
) -> None:
    """Two `build:` sections of one tag give two image ids, and the first `up` after an
    `up --build` then recreates the worker for nothing: only `worker` builds."""
    builders = [name for name, service in services.items() if "build" in service]
    assert builders == ["worker"]
    users = {name for name, service in services.items() if uses_project_image(service)}
    assert users == {"worker", "worker-extra", "replayer"}


@pytest.mark.parametrize("service_name", ["worker", "replayer"])
def test_container_arguments_parse_with_the_cli(
    service_name: str, services: dict[str, dict[str, Any]], dockerfile: list[tuple[str, str]]
) -> None:
    argv = container_argv(services[service_name], dockerfile)
    livepulse_args = argv[argv.index("livepulse") + 1 :]
    sub_command = livepulse_args[0]
    try:
        module = importlib.import_module(f"streams.commands.{sub_command}")
    except ModuleNotFoundError as exc:
        if exc.name != f"streams.commands.{sub_command}":
            raise
        missing_piece(f"streams/commands/{sub_command}.py is not written yet")
    parser = argparse.ArgumentParser(prog="livepulse", exit_on_error=False)
    module.register(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(livepulse_args)
    except (argparse.ArgumentError, SystemExit) as exc:
        pytest.fail(f"{service_name}: `livepulse {' '.join(livepulse_args)}` does not parse: {exc}")
    assert callable(args.func)


def test_replayer_fixture_is_in_the_image(services: dict[str, dict[str, Any]]) -> None:
    replay_args = services["replayer"]["command"]
    fixture = next(arg for arg in replay_args if arg.startswith("/app/fixtures/"))
    relative = fixture.removeprefix("/app/")
    assert "--bootstrap" in replay_args
    assert replay_args[replay_args.index("--bootstrap") + 1] == INTERNAL_BOOTSTRAP
    if not (ROOT / relative).is_file():
        missing_piece(f"{relative} (the replayer's default fixture) is not in the repo yet")


def test_worker_settings_load_from_the_compose_environment(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_module = importlib.import_module("streams.runtime.settings")

    def settings_of(name: str) -> Any:
        for key in [k for k in os.environ if k.startswith("LIVEPULSE_")]:
            monkeypatch.delenv(key)
        for key, value in environment(services[name]).items():
            monkeypatch.setenv(key, value)
        return settings_module.Settings()

    assert settings_of("replayer").bootstrap == INTERNAL_BOOTSTRAP
    settings = settings_of("worker")
    assert settings.bootstrap == INTERNAL_BOOTSTRAP
    assert settings.partitions == 4
    assert settings.web_host == "0.0.0.0", "reachable from Prometheus and from the host"
    assert settings.web_port == WEB_PORT
    assert str(settings.data_dir) == "/data"
    worker = services["worker"]
    healthcheck = " ".join(worker["healthcheck"]["test"])
    assert f"http://127.0.0.1:{WEB_PORT}/status" in healthcheck


def test_worker_can_be_scaled(services: dict[str, dict[str, Any]]) -> None:
    """The first worker at a fixed host port with a named state volume; `worker-extra`
    replicas (LIVEPULSE_EXTRA_WORKERS) with nothing they would fight over and no volume."""
    worker, extra = services["worker"], services["worker-extra"]
    data_dir = environment(worker)["LIVEPULSE_DATA_DIR"]
    assert environment(extra) == environment(worker)
    # One fixed host port (a range drifts from one `up` to the next).
    assert worker["ports"] == [f"127.0.0.1:6066:{WEB_PORT}"]
    # State in a named volume, so `down -v` drops it; no anonymous volume anywhere.
    assert worker["volumes"] == [f"worker-data:{data_dir}"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            assert ":" in volume, f"{name}: anonymous volume {volume} outlives its container"
    # The replicas: no name, hostname or port of their own, state on a tmpfs.
    for key in ("container_name", "hostname", "ports", "volumes", "build"):
        assert key not in extra, f"worker-extra: {key}"
    (tmpfs,) = extra["tmpfs"]
    assert tmpfs.split(":")[0] == data_dir and "uid=10001" in tmpfs
    assert extra["scale"] == "0", "no extra replica unless LIVEPULSE_EXTRA_WORKERS says so"
    # Prometheus gets a fixed list of targets (a dead replica stays, as up == 0): the file
    # start.sh writes from the same LIVEPULSE_EXTRA_WORKERS.
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "livepulse"]
    assert job["file_sd_configs"] == [{"files": ["/tmp/livepulse/workers.json"]}]
    assert "dns_sd_configs" not in job
    prometheus = environment(services["prometheus"])
    assert prometheus["LIVEPULSE_EXTRA_WORKERS"] == extra["scale"]


@pytest.mark.parametrize("extra", [0, 1, 3])
def test_prometheus_start_script_lists_every_worker(extra: int, tmp_path: Path) -> None:
    """deploy/prometheus/start.sh (POSIX sh) writes the first worker and `extra` replicas by
    container name, then execs Prometheus with its arguments."""
    sh = shutil.which("sh")
    assert sh
    script = (ROOT / "deploy" / "prometheus" / "start.sh").read_text(encoding="utf-8")
    # Run it with its paths moved under tmp_path and a fake Prometheus that prints its argv.
    fake = tmp_path / "prometheus"
    fake.write_text('#!/bin/sh\necho "$@"\n', encoding="utf-8")
    fake.chmod(0o755)
    script = script.replace("/tmp/livepulse", str(tmp_path / "sd")).replace(
        "/bin/prometheus", str(fake)
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "LIVEPULSE_EXTRA_WORKERS": str(extra),
        "LIVEPULSE_COMPOSE_PROJECT": "demo",
    }
    done = subprocess.run(
        [sh, "-c", script, "start.sh", "--config.file=x"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "--config.file=x"
    (group,) = json.loads((tmp_path / "sd" / "workers.json").read_text(encoding="utf-8"))
    assert group["targets"] == ["worker:6066"] + [
        f"demo-worker-extra-{n}:6066" for n in range(1, extra + 1)
    ]
    env["LIVEPULSE_EXTRA_WORKERS"] = "two"
    refused = subprocess.run(
        [sh, "-c", script, "start.sh"], env=env, capture_output=True, text=True, check=False
    )
    assert refused.returncode == 2 and "LIVEPULSE_EXTRA_WORKERS" in refused.stderr


def test_worker_waits_for_the_broker_with_the_wait_script(
    services: dict[str, dict[str, Any]], dockerfile: list[tuple[str, str]], wait_script: ModuleType
) -> None:
    installed = [a for k, a in dockerfile if k == "COPY" and "wait_for_kafka.py" in a]
    assert installed and installed[0].split()[-1] == "/usr/local/bin/wait-for-kafka"
    assert any(
        k == "RUN" and "chmod 0755 /usr/local/bin/wait-for-kafka" in a for k, a in dockerfile
    )
    assert WAIT_SCRIPT.read_text(encoding="utf-8").startswith("#!/usr/bin/env python3\n")
    entrypoint = services["worker"]["entrypoint"]
    assert entrypoint[0] == "wait-for-kafka" and entrypoint[-1] == "livepulse"
    # With no --bootstrap the script reads LIVEPULSE_BOOTSTRAP, which compose sets.
    env = environment(services["worker"])
    assert wait_script.parse_bootstrap(env["LIVEPULSE_BOOTSTRAP"]) == [("kafka", 9092)]
    assert float(env["LIVEPULSE_WAIT_TIMEOUT_SECONDS"]) >= 30


# --- Kafka ---


def test_kafka_runs_single_node_kraft(services: dict[str, dict[str, Any]]) -> None:
    kafka = services["kafka"]
    env = environment(kafka)
    assert not [k for k in env if "ZOOKEEPER" in k], "KRaft: no ZooKeeper"
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@")
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[key] == "1", key
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert env["KAFKA_NUM_PARTITIONS"] == "4"
    cluster_id = env["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16, "a base64url UUID"
    assert "kafka-data:" + env["KAFKA_LOG_DIRS"] in kafka["volumes"]
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])


def test_kafka_listeners_fit_the_clients(services: dict[str, dict[str, Any]]) -> None:
    env = environment(services["kafka"])

    def by_name(value: str) -> dict[str, str]:
        pairs = (item.split("://", 1) for item in value.split(","))
        return {name: address for name, address in pairs}

    listeners = by_name(env["KAFKA_LISTENERS"])
    advertised = by_name(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert set(listeners) == set(protocols)
    assert controller in listeners and controller not in advertised
    assert set(advertised) <= set(listeners)
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    controller_port = listeners[controller].rsplit(":", 1)[1]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].endswith(f":{controller_port}")
    # Containers reach the broker as kafka:9092 ...
    internal = advertised[env["KAFKA_INTER_BROKER_LISTENER_NAME"]]
    assert internal == INTERNAL_BOOTSTRAP
    for name in ("worker", "replayer", "kafka-init"):
        assert environment(services[name])["LIVEPULSE_BOOTSTRAP"] == internal, name
    # ... and the host as the published loopback port, which the broker must advertise.
    host_listeners = [n for n, a in advertised.items() if a.startswith("127.0.0.1:")]
    assert len(host_listeners) == 1
    host_port = advertised[host_listeners[0]].rsplit(":", 1)[1]
    container_port = listeners[host_listeners[0]].rsplit(":", 1)[1]
    assert f"127.0.0.1:{host_port}:{container_port}" in services["kafka"]["ports"]
    assert host_port != "9092", "9092 on the host belongs to `livepulse kafka up`"


def test_kafka_init_creates_exactly_the_contract_topics(
    services: dict[str, dict[str, Any]],
) -> None:
    init = services["kafka-init"]
    env = environment(init)
    topics = env["LIVEPULSE_TOPICS"].split()
    assert len(topics) == len(set(topics))
    assert set(topics) == set(TOPIC_BY_TYPE.values())
    assert env["LIVEPULSE_DEADLETTER_TOPIC"] == DEADLETTER_TOPIC
    settings_module = importlib.import_module("streams.runtime.settings")
    assert tuple(topics) == settings_module.CONTRACT_TOPICS
    assert settings_module.DEADLETTER_TOPIC == DEADLETTER_TOPIC
    assert env["LIVEPULSE_PARTITIONS"] == "4"
    assert init["restart"] == "no"
    # It runs the mounted script, which reads exactly those variables.
    mount = "./deploy/kafka/create-topics.sh:/opt/livepulse/create-topics.sh:ro"
    assert init["volumes"] == [mount]
    assert init["command"] == ["bash", "/opt/livepulse/create-topics.sh"]
    script = CREATE_TOPICS_SCRIPT.read_text(encoding="utf-8")
    for variable in ("LIVEPULSE_BOOTSTRAP", "LIVEPULSE_TOPICS", "LIVEPULSE_DEADLETTER_TOPIC"):
        assert f"${{{variable}" in script or f"${variable}" in script, variable
    assert '--partitions "$partitions"' in script and "${LIVEPULSE_PARTITIONS:-4}" in script
    assert "--if-not-exists" in script and "--replication-factor 1" in script
    assert "/opt/kafka/bin/kafka-topics.sh" in script


def test_create_topics_script_parses_and_creates_each_topic_once(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash here")
    subprocess.run([bash, "-n", str(CREATE_TOPICS_SCRIPT)], check=True)
    # Run it against a stand-in kafka-topics.sh that records its arguments.
    log = tmp_path / "calls.log"
    fake = tmp_path / "kafka-topics.sh"
    fake.write_text(
        f'#!/usr/bin/env bash\necho "$*" >> {shlex.quote(str(log))}\n'
        # --list answers the topics in FAKE_EXISTING, one a line.
        'if [[ "$*" == *--list* ]]; then printf "%s\\n" ${FAKE_EXISTING:-}; fi\n'
    )
    fake.chmod(0o755)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "KAFKA_TOPICS_CMD": str(fake),
        "LIVEPULSE_BOOTSTRAP": INTERNAL_BOOTSTRAP,
        "LIVEPULSE_TOPICS": " ".join(sorted(set(TOPIC_BY_TYPE.values()))),
        "LIVEPULSE_DEADLETTER_TOPIC": DEADLETTER_TOPIC,
        "LIVEPULSE_PARTITIONS": "3",
    }
    subprocess.run([bash, str(CREATE_TOPICS_SCRIPT)], env=env, check=True, timeout=30)
    calls = log.read_text().splitlines()
    created = [c for c in calls if "--create" in c]
    topics = [c.split("--topic ")[1].split()[0] for c in created]
    assert sorted(topics) == sorted({*TOPIC_BY_TYPE.values(), DEADLETTER_TOPIC})
    for call in created:
        assert f"--bootstrap-server {INTERNAL_BOOTSTRAP}" in call
        assert "--if-not-exists" in call and "--partitions 3" in call
    # A second `up`: only the missing topics are created (each call is a JVM start).
    log.unlink()
    env["FAKE_EXISTING"] = f"live.sessions {DEADLETTER_TOPIC} __consumer_offsets"
    subprocess.run([bash, str(CREATE_TOPICS_SCRIPT)], env=env, check=True, timeout=30)
    again = [
        c.split("--topic ")[1].split()[0] for c in log.read_text().splitlines() if "--create" in c
    ]
    assert sorted(again) == sorted(set(TOPIC_BY_TYPE.values()) - {"live.sessions"})
    del env["FAKE_EXISTING"]
    # Missing configuration fails loudly instead of creating nothing.
    del env["LIVEPULSE_TOPICS"]
    result = subprocess.run([bash, str(CREATE_TOPICS_SCRIPT)], env=env, capture_output=True)
    assert result.returncode != 0 and b"LIVEPULSE_TOPICS" in result.stderr


# --- Prometheus ---


def test_prometheus_scrapes_the_worker_and_loads_the_rules(
    services: dict[str, dict[str, Any]],
) -> None:
    prometheus = services["prometheus"]
    mounted = [v for v in prometheus["volumes"] if v.startswith("./deploy/prometheus/")]
    assert mounted == [
        "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro",
        "./deploy/prometheus/start.sh:/etc/prometheus/start.sh:ro",
        "./deploy/prometheus/rules:/etc/prometheus/rules:ro",
    ]
    assert prometheus["entrypoint"] == ["/bin/sh", "/etc/prometheus/start.sh"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert "127.0.0.1:9090:9090" in prometheus["ports"]
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    jobs = [job for job in config["scrape_configs"] if job.get("file_sd_configs")]
    assert len(jobs) == 1, "one job scrapes the workers (the targets start.sh writes)"
    job = jobs[0]
    assert job["job_name"] == "livepulse", "the alert rules select job=livepulse"
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job["scrape_interval"] == "5s"
    assert environment(services["worker"])["LIVEPULSE_WEB_PORT"] == str(WEB_PORT)
    # rule_files resolve, relative to the config file, to the mounted rules: the same
    # relative path works on the host (deploy/prometheus/) and in the container.
    (pattern,) = config["rule_files"]
    assert pattern == "rules/*.yml"
    found = sorted(PROMETHEUS_CONFIG.parent.glob(pattern))
    assert found == sorted(PROMETHEUS_RULES.glob("*.yml")) and len(found) >= 2


# --- Grafana ---


def test_grafana_is_provisioned_with_the_datasource_and_dashboards(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]
    binds = [v.split(":") for v in grafana["volumes"] if v.startswith("./")]
    mounts = {source: target for source, target, mode in binds if mode == "ro"}
    assert len(mounts) == len(binds) == 3, "read-only bind mounts"
    assert "grafana-data:/var/lib/grafana" in grafana["volumes"]
    provisioning = "/etc/grafana/provisioning"
    assert mounts["./deploy/grafana/provisioning/datasources"] == f"{provisioning}/datasources"
    assert mounts["./deploy/grafana/provisioning/dashboards"] == f"{provisioning}/dashboards"
    dashboards_in_container = mounts["./deploy/grafana/dashboards"]
    assert grafana["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
    assert "127.0.0.1:3000:3000" in grafana["ports"]
    assert "/api/health" in " ".join(grafana["healthcheck"]["test"])
    env = environment(grafana)
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(dashboards_in_container + "/")
    assert (GRAFANA / "dashboards" / home.rsplit("/", 1)[1]).is_file()
    assert env["GF_SECURITY_ADMIN_PASSWORD"], "a default, so the first `up` needs no edit"

    # The datasource points at the prometheus service's container port ...
    sources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    assert "9090" in " ".join(services["prometheus"]["healthcheck"]["test"])
    # ... and the provider reads the directory the dashboards are mounted at.
    providers = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "livepulse.yml").read_text()
    )
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == dashboards_in_container
    # Every panel and target of every dashboard names that datasource by its uid.
    dashboards = sorted((GRAFANA / "dashboards").glob("*.json"))
    assert {p.name for p in dashboards} == {
        "livepulse-room-overview.json",
        "livepulse-claims.json",
    }
    uids = set()
    for path in dashboards:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        uids.add(dashboard["uid"])
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == source["uid"], (path.name, panel["title"])
            assert panel["targets"], (path.name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == source["uid"]
                assert target["expr"].strip()
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                assert variable["datasource"]["uid"] == source["uid"]
    assert len(uids) == len(dashboards)


def test_prometheus_config_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    result = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- .env.example ---


def test_env_example_documents_exactly_the_variables_compose_reads(
    raw_compose: dict[str, Any], compose: dict[str, Any]
) -> None:
    referenced = referenced_variables(yaml_without_comments(COMPOSE_FILE))
    for name in COMPOSE_OWN_VARIABLES:
        referenced.pop(name, None)
    documented = read_env_file(ENV_EXAMPLE)
    assert set(documented) == set(referenced)
    for name, default in referenced.items():
        assert default is not None, f"{name} has no default: `docker compose up` would need a .env"
        assert documented[name] == default, (
            f"{name}: .env.example {documented[name]!r} != {default!r}"
        )
    # So copying .env.example to .env changes nothing until someone edits it.
    assert interpolate(copy.deepcopy(raw_compose), documented) == compose
    # Comments in .env.example describe every variable.
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    for name in documented:
        before = text.split(f"\n{name}=")[0].rstrip().splitlines()
        assert before and before[-1].startswith("#"), f"{name} has no comment above it"


def test_interpolation_follows_the_compose_rules() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate_text("${SET:-d}/${EMPTY:-d}/${UNSET:-d}/${EMPTY-d}", env) == "x/d/d/"
    assert interpolate_text("$$HOME ${SET:+y} ${UNSET:+y}.", env) == "$HOME y ."
    with pytest.raises(ValueError, match="UNSET"):
        interpolate_text("${UNSET:?set it}", env)


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client")
def test_docker_compose_config_accepts_the_file() -> None:
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip("the docker client has no compose plugin here")
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


# --- the broker wait script ---


def test_wait_script_parses_bootstrap_lists(wait_script: ModuleType) -> None:
    parse = wait_script.parse_bootstrap
    assert parse("kafka:9092") == [("kafka", 9092)]
    assert parse("a:1, b:2,") == [("a", 1), ("b", 2)]
    assert parse("[::1]:9092") == [("::1", 9092)]
    for bad in ("", "kafka", "kafka:port", ":9092"):
        with pytest.raises(ValueError):
            parse(bad)


class FakeBroker:
    """Answers ApiVersions like a Kafka broker would, on a loopback port, until closed."""

    def __init__(self, error_code: int = 0) -> None:
        self.error_code = error_code
        self.requests: list[tuple[int, int, int, bytes]] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.05)
        self.port: int = self.server.getsockname()[1]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                request = b""
                while len(request) < 4 or len(request) < 4 + struct.unpack(">i", request[:4])[0]:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                api_key, version, correlation_id, id_len = struct.unpack(">hhih", request[4:14])
                self.requests.append((api_key, version, correlation_id, request[14 : 14 + id_len]))
                # ApiVersions v0 answer: correlation id, error code, one (key, min, max) entry.
                body = struct.pack(">ihihhh", correlation_id, self.error_code, 1, 18, 0, 3)
                conn.sendall(struct.pack(">i", len(body)) + body)

    def __enter__(self) -> FakeBroker:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=10)
        self.server.close()
        assert not self.thread.is_alive()


def closed_loopback_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port: int = sock.getsockname()[1]
    return port


def test_wait_script_accepts_a_broker_that_answers(wait_script: ModuleType) -> None:
    with FakeBroker() as broker:
        assert wait_script.wait_for_kafka([("127.0.0.1", broker.port)], timeout_seconds=5)
    assert broker.requests == [(18, 0, 1, b"livepulse-wait")]


def test_wait_script_retries_until_the_deadline(wait_script: ModuleType) -> None:
    port = closed_loopback_port()
    assert not wait_script.wait_for_kafka(
        [("127.0.0.1", port)], timeout_seconds=1.0, interval_seconds=0.2
    )
    # A listener that answers with an error is not a ready broker either.
    with FakeBroker(error_code=35) as broker:
        assert not wait_script.wait_for_kafka(
            [("127.0.0.1", broker.port)], timeout_seconds=0.5, interval_seconds=0.3
        )


def test_wait_script_runs_the_command_once_the_broker_answers() -> None:
    with FakeBroker() as broker:
        result = subprocess.run(
            [
                sys.executable,
                str(WAIT_SCRIPT),
                "--bootstrap",
                f"127.0.0.1:{closed_loopback_port()},127.0.0.1:{broker.port}",
                "--timeout",
                "10",
                "--",
                sys.executable,
                "-c",
                "print('worker started')",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "worker started"
    result = subprocess.run(
        [sys.executable, str(WAIT_SCRIPT), "--timeout", "0.5", "--", "false"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "LIVEPULSE_BOOTSTRAP": f"127.0.0.1:{closed_loopback_port()}"},
    )
    assert result.returncode == 1
    assert "no broker answered" in result.stderr
