#!/usr/bin/env bash
# The README's test command: set up, bring up the project's own Kafka broker, run every test.
# Extra arguments go to pytest. Stops the broker (and the Docker engine) afterwards if this
# script started it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

started_broker=0
if ! .venv/bin/livepulse kafka status >/dev/null 2>&1; then
  .venv/bin/livepulse kafka up
  started_broker=1
fi
# Docker for tests/test_compose_stack.py (scripts/docker.sh): an engine (installed and started
# here as root if none answers, stopped afterwards if started here), the pinned compose plugin,
# the stand-in images. Without them that test skips locally and fails under CI=true.
started_docker=0
if engine=$(bash scripts/docker.sh engine); then
  [ "$engine" = started ] && started_docker=1
  bash scripts/docker.sh compose && bash scripts/docker.sh standins ||
    echo "test.sh: the compose plugin or the stand-in images are missing; see above" >&2
else
  echo "test.sh: no Docker engine; tests/test_compose_stack.py will skip (fail under CI)" >&2
fi
cleanup() {
  if [ "$started_broker" = 1 ]; then .venv/bin/livepulse kafka down || true; fi
  if [ "$started_docker" = 1 ]; then bash scripts/docker.sh stop || true; fi
}
trap cleanup EXIT

set +e
.venv/bin/python -m pytest "$@"
code=$?
set -e
if [ "$code" = 5 ]; then
  echo "test.sh: pytest collected no tests; that is a failure here" >&2
fi
exit "$code"
