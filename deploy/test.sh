#!/usr/bin/env bash
# The project's test command (also what .ci/run executes):
#   1. deploy/setup.sh (idempotent install)
#   2. start the Kafka broker and PostgreSQL unless they already answer; an EXIT trap stops
#      exactly what this script started (also on failure and Ctrl-C)
#   3. export KAFKA_BOOTSTRAP_SERVERS and TEST_POSTGRES_URL, apply the topics (deploy/topics.py)
#   4. ruff, mypy, pytest -- all three run; the script fails if any of them failed
# Arguments go to pytest:  deploy/test.sh -k broker -x
# Ports: SELFCARE_KAFKA_PORT (9092), SELFCARE_PG_PORT (55432); state folder SELFCARE_VAR_DIR (./var).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { echo "[test] $*" >&2; }
PY=.venv/bin/python
KAFKA_PORT=${SELFCARE_KAFKA_PORT:-9092}
PG_PORT=${SELFCARE_PG_PORT:-55432}
VAR_DIR=${SELFCARE_VAR_DIR:-var}

bash deploy/setup.sh

started_broker=0
started_pg=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if ((started_pg)); then
        "$PY" -m deploy.postgres stop --port "$PG_PORT" --var-dir "$VAR_DIR" || rc=1
    fi
    if ((started_broker)); then
        "$PY" -m deploy.broker stop --base-port "$KAFKA_PORT" --var-dir "$VAR_DIR" || rc=1
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- services: start only what does not answer yet, and remember it
if "$PY" -m deploy.broker status --base-port "$KAFKA_PORT" --var-dir "$VAR_DIR" >/dev/null 2>&1; then
    say "a Kafka broker already answers on 127.0.0.1:$KAFKA_PORT: using it, leaving it running"
    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
else
    started_broker=1 # set before starting: a half-started broker is stopped too
    KAFKA_BOOTSTRAP_SERVERS=$("$PY" -m deploy.broker start --base-port "$KAFKA_PORT" --var-dir "$VAR_DIR")
fi
if "$PY" -m deploy.postgres status --port "$PG_PORT" --var-dir "$VAR_DIR" >/dev/null 2>&1; then
    say "PostgreSQL already answers on 127.0.0.1:$PG_PORT: using it, leaving it running"
    TEST_POSTGRES_URL=$("$PY" -m deploy.postgres url --port "$PG_PORT" --var-dir "$VAR_DIR")
else
    started_pg=1
    TEST_POSTGRES_URL=$("$PY" -m deploy.postgres start --port "$PG_PORT" --var-dir "$VAR_DIR")
fi
export KAFKA_BOOTSTRAP_SERVERS TEST_POSTGRES_URL
say "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS"
say "TEST_POSTGRES_URL=$TEST_POSTGRES_URL"

if [[ -f deploy/topics.py ]]; then
    "$PY" -m deploy.topics apply
fi

# ---- checks: run all three, report each
results=()
failed=0
check() {
    local name=$1 rc=0
    shift
    say "== $name"
    "$@" || rc=$?
    if [[ $name == pytest && $rc -eq 5 ]]; then
        results+=("$name: FAILED (exit 5: no tests collected)")
        failed=1
    elif ((rc)); then
        results+=("$name: FAILED (exit $rc)")
        failed=1
    else
        results+=("$name: ok")
    fi
}
check ruff .venv/bin/ruff check .
check mypy .venv/bin/mypy
check pytest "$PY" -m pytest -q "$@"

say "---- summary"
for line in "${results[@]}"; do say "$line"; done
exit "$failed"
