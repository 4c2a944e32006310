#!/usr/bin/env bash
# The README's main job: set up, start the local broker, replay the default fixture through a
# worker, print the claims report, and keep /metrics and /report live until Ctrl-C.
# Arguments go to `livepulse demo` (e.g. --fixture fixtures/impulse.jsonl, --exit).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/livepulse demo "$@"
