#!/bin/sh
# The compose stack's Prometheus entry (POSIX sh: the official image has busybox, no bash).
# Writes the workers' scrape targets as a fixed list, then runs Prometheus with the arguments
# given: the first worker (`worker:6066`) and LIVEPULSE_EXTRA_WORKERS extra replicas, by their
# container names (<project>-worker-extra-<n>). A replica that dies stays a target, scraped as
# down (up == 0), so LivepulseWorkerDown fires; DNS discovery would drop it instead.
set -eu
extra=${LIVEPULSE_EXTRA_WORKERS:-0}
project=${LIVEPULSE_COMPOSE_PROJECT:?LIVEPULSE_COMPOSE_PROJECT (the compose project name) must be set}
case "$extra" in '' | *[!0-9]*)
    echo "start.sh: LIVEPULSE_EXTRA_WORKERS must be a number, not '$extra'" >&2
    exit 2
    ;;
esac
targets='"worker:6066"'
n=1
while [ "$n" -le "$extra" ]; do
    targets="$targets, \"$project-worker-extra-$n:6066\""
    n=$((n + 1))
done
mkdir -p /tmp/livepulse
printf '[{"targets": [%s]}]\n' "$targets" >/tmp/livepulse/workers.json.new
mv /tmp/livepulse/workers.json.new /tmp/livepulse/workers.json
exec /bin/prometheus "$@"
