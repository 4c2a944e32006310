#!/usr/bin/env bash
# Creates livepulse's contract topics on the compose stack's broker (the one-shot kafka-init
# service runs it inside the apache/kafka image). Idempotent: --if-not-exists, so re-running
# `docker compose up` on an existing volume is a no-op. The topic names come from the compose
# file's environment, where tests/test_compose.py checks them against schemas.TOPIC_BY_TYPE.
set -euo pipefail

: "${LIVEPULSE_BOOTSTRAP:?LIVEPULSE_BOOTSTRAP (HOST:PORT of the broker) must be set}"
: "${LIVEPULSE_TOPICS:?LIVEPULSE_TOPICS (space-separated contract topics) must be set}"
: "${LIVEPULSE_DEADLETTER_TOPIC:?LIVEPULSE_DEADLETTER_TOPIC must be set}"
partitions="${LIVEPULSE_PARTITIONS:-4}"
kafka_topics="${KAFKA_TOPICS_CMD:-/opt/kafka/bin/kafka-topics.sh}"

# The broker may still be electing its controller when its healthcheck first passes; retry
# the first contact rather than fail the whole stack on a slow start; the answer is the list
# of the topics that exist.
for ((attempt = 1; ; attempt++)); do
    if existing="$("$kafka_topics" --bootstrap-server "$LIVEPULSE_BOOTSTRAP" --list 2>/dev/null)"; then
        break
    fi
    if [ "$attempt" -eq 30 ]; then
        echo "create-topics: broker $LIVEPULSE_BOOTSTRAP did not answer after $attempt tries" >&2
        exit 1
    fi
    echo "create-topics: waiting for $LIVEPULSE_BOOTSTRAP (try $attempt)" >&2
    sleep 2
done

# Only the missing ones: every kafka-topics.sh call starts a JVM (seconds on a small machine),
# and kafka-init runs on every `docker compose up`. --if-not-exists still covers a race.
# shellcheck disable=SC2086  # word splitting of the space-separated list is intended
for topic in $LIVEPULSE_TOPICS "$LIVEPULSE_DEADLETTER_TOPIC"; do
    if grep -qxF "$topic" <<<"$existing"; then
        continue
    fi
    "$kafka_topics" --bootstrap-server "$LIVEPULSE_BOOTSTRAP" --create --if-not-exists \
        --topic "$topic" --partitions "$partitions" --replication-factor 1
done

# Show what exists now (a regex over the names: --describe takes one --topic).
# shellcheck disable=SC2086  # word splitting of the space-separated list is intended
pattern="$(printf '%s|' $LIVEPULSE_TOPICS "$LIVEPULSE_DEADLETTER_TOPIC")"
"$kafka_topics" --bootstrap-server "$LIVEPULSE_BOOTSTRAP" --describe --topic "${pattern%|}" >&2
