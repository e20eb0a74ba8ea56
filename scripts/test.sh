#!/usr/bin/env bash
# make test: install what is missing, build, start a throwaway PostgreSQL, run every test, stop it.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh postgres

echo "== build"
swift build --build-tests

base=$(mktemp -d /tmp/billing-make-test.XXXXXX)
port=$(( 20000 + RANDOM % 20000 ))
password="make-test-$RANDOM$RANDOM"
cleanup() { scripts/pg.sh stop "$base"; rm -rf "$base"; }
trap cleanup EXIT

echo "== PostgreSQL on 127.0.0.1:$port ($base)"
scripts/pg.sh start "$base" "$port" "$password"
export BILLING_TEST_DATABASE_URL="postgres://postgres:$password@127.0.0.1:$port/postgres"

echo "== test"
swift test --skip-build
