#!/usr/bin/env bash
# kafka-run-class.sh, reduced: java with /opt/kafka/libs on the classpath.
set -euo pipefail
log4j=${KAFKA_LOG4J_OPTS:--Dlog4j.configuration=file:/opt/kafka/config/tools-log4j.properties}
# shellcheck disable=SC2086  # the *_OPTS variables hold several words
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Djava.awt.headless=true $log4j ${KAFKA_OPTS:-} -cp "/opt/kafka/libs/*" "$@"
