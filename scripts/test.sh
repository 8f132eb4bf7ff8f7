#!/usr/bin/env bash
# Faultline's test command: installs what the end-to-end tests need, then runs the gates.
#
#   scripts/test.sh [ARGS...]    ARGS go to `cargo nextest run` (or `cargo test`)
#
# Idempotent; works on a fresh Debian machine with Rust, Python 3 + pip and Node + npm:
#   1. Chromium from Debian (only if /usr/bin/chromium is missing; needs root),
#   2. the pinned sentry-python (tests/sdk/requirements.txt),
#   3. the pinned JS SDKs, playwright-core and esbuild (`npm ci` in tests/sdk),
#   4. cargo fmt --check, cargo clippy --all-targets -D warnings, cargo nextest run
#      (cargo test when nextest is not installed); with FAULTLINE_TEST_DATABASE_URL set, the
#      end-to-end tests run a second time with every server on its own PostgreSQL database;
#   5. the same checks and the unit tests of the benchmark (bench/).
# An install step that fails stops the script; the gates all run, and the script exits
# non-zero if any of them failed.
set -euo pipefail

cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

if [[ ! -x /usr/bin/chromium && -z "${CHROMIUM_PATH:-}" ]]; then
    step "installing Chromium (apt)"
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq chromium >/dev/null
fi

python=${FAULTLINE_TEST_PYTHON:-python3}
step "installing sentry-python ($python -m pip install -r tests/sdk/requirements.txt)"
PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    "$python" -m pip install --quiet -r tests/sdk/requirements.txt

step "installing JS SDKs (npm ci in tests/sdk)"
(cd tests/sdk && npm ci --no-audit --no-fund --loglevel=error)

# The gates all run, so one run reports every failure; the exit status says whether any failed.
failed=()

step "cargo fmt --check"
cargo fmt --check || failed+=("cargo fmt --check")

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings || failed+=("cargo clippy")

if cargo nextest --version >/dev/null 2>&1; then
    all_tests() { cargo nextest run "$@"; }
    end_to_end_tests() { cargo nextest run -E 'not kind(lib)' "$@"; }
else
    step "(cargo-nextest is not installed: using cargo test)"
    all_tests() { cargo test "$@"; }
    end_to_end_tests() { cargo test --test '*' "$@"; }
fi

step "tests on SQLite (and the store suite's PostgreSQL half when FAULTLINE_TEST_DATABASE_URL is set)"
all_tests "$@" || failed+=("tests on SQLite")

if [[ -n "${FAULTLINE_TEST_DATABASE_URL:-}" ]]; then
    step "end-to-end tests again, each server on its own PostgreSQL database ($FAULTLINE_TEST_DATABASE_URL)"
    FAULTLINE_TEST_BACKEND=postgres end_to_end_tests "$@" || failed+=("end-to-end tests on PostgreSQL")
else
    step "SKIPPED the PostgreSQL half: FAULTLINE_TEST_DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)"
fi

step "the benchmark's own checks and tests (bench/, a separate package)"
(cd bench && cargo fmt --check && cargo clippy --all-targets -- -D warnings && cargo test) ||
    failed+=("benchmark checks and tests")

if ((${#failed[@]})); then
    printf '\nFAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
