#!/usr/bin/env bash
# The README's test command: set up, bring up the project's own Kafka broker, run every test.
# Extra arguments go to pytest. Stops the broker afterwards if this script started it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

started_broker=0
if ! .venv/bin/livepulse kafka status >/dev/null 2>&1; then
  .venv/bin/livepulse kafka up
  started_broker=1
fi
cleanup() {
  if [ "$started_broker" = 1 ]; then .venv/bin/livepulse kafka down || true; fi
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
