#!/usr/bin/env bash
# The run command: the whole workflow on a local broker, SQLite by default.
#   bash deploy/run.sh            # install what is missing, start Kafka, apply topics, start the
#                                 # three services + local SMS gateway + SMTP sink, play the scenario
#   bash deploy/run.sh --serve    # the same, but no scenario: keep running until Ctrl-C
# Stops what it started (the broker too) when it ends or on Ctrl-C.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python
KAFKA_PORT=${SELFCARE_KAFKA_PORT:-9092}
VAR_DIR=${SELFCARE_VAR_DIR:-var}

bash deploy/setup.sh

started_broker=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if ((started_broker)); then
        "$PY" -m deploy.broker stop --base-port "$KAFKA_PORT" --var-dir "$VAR_DIR" || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if "$PY" -m deploy.broker status --base-port "$KAFKA_PORT" --var-dir "$VAR_DIR" >/dev/null 2>&1; then
    BOOTSTRAP=127.0.0.1:$KAFKA_PORT
else
    started_broker=1
    BOOTSTRAP=$("$PY" -m deploy.broker start --base-port "$KAFKA_PORT" --var-dir "$VAR_DIR")
fi
export KAFKA_BOOTSTRAP_SERVERS=$BOOTSTRAP
"$PY" -m deploy.topics apply --bootstrap "$BOOTSTRAP"
"$PY" -m deploy.demo --bootstrap "$BOOTSTRAP" "$@"
