#!/usr/bin/env bash
# Idempotent installation of everything the project and its tests need, for a fresh Debian 12
# machine, run as root (works from any cwd). A second run changes nothing and takes ~1 s:
#   - .venv (python3.11), `pip install -e '.[dev]'` only when pyproject.toml changed
#   - Debian packages postgresql (15) and kcat, only when missing (a system cluster the package
#     may start on port 5432 is left alone: the tests run their own, see deploy/postgres.py)
#   - JDK 17 and Maven, only when missing (the Kafka broker runs from Maven Central jars)
#   - the Kafka broker's jars (python -m deploy.broker fetch; cached outside the repository)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { echo "[setup] $*" >&2; }

# ---- Debian packages, only what is missing
packages=()
[[ -x /usr/lib/postgresql/15/bin/initdb ]] || packages+=(postgresql)
command -v kcat >/dev/null || packages+=(kcat)
command -v java >/dev/null || packages+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || packages+=(maven)
if [[ ! -x .venv/bin/python ]] && ! python3.11 -c 'import ensurepip' 2>/dev/null; then
    packages+=(python3.11-venv)
fi
if ((${#packages[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        say "missing packages ${packages[*]}: run this script as root"
        exit 1
    fi
    say "installing ${packages[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}"
else
    say "Debian packages present"
fi

# ---- virtualenv + project (editable) with its dev tools
if [[ ! -x .venv/bin/python ]]; then
    say "creating .venv"
    python3.11 -m venv .venv
fi
stamp=.venv/.selfcare-pyproject.sha256
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -f $stamp || "$(cat "$stamp")" != "$want" ]]; then
    say "pyproject.toml changed since the last install: pip install -e '.[dev]'"
    .venv/bin/python -m pip install -q -e '.[dev]'
    echo "$want" >"$stamp"
else
    say "Python packages up to date (pyproject.toml unchanged)"
fi

# ---- Kafka broker jars (no-op when cached)
.venv/bin/python -m deploy.broker fetch

# ---- Strimzi's CRDs, generated from Strimzi's Maven Central artifacts (no-op when cached); the
# manifest tests validate deploy/k8s against them (they need a Java 21+ JDK; without one the
# tests that use them fail with the reason, the rest still run)
.venv/bin/python -m deploy.strimzi_crds >/dev/null || say "Strimzi CRDs not generated (see above)"
