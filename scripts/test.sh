#!/usr/bin/env bash
# make test: install what is missing, build, start a throwaway PostgreSQL, run every test, stop it.
# scripts/test.sh --filter NAME runs only the tests NAME matches (any `swift test` arguments are passed on).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh postgres python browser

# localstripe (a Stripe server written by others) and Stripe's Python library, pinned, in a virtualenv of ours.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import localstripe, stripe, openapi_spec_validator, schemathesis" 2>/dev/null; then
  echo "== python virtualenv (.venv): localstripe, stripe, openapi-spec-validator, schemathesis"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-test.txt
fi

echo "== build"
swift build --build-tests

base=$(mktemp -d /tmp/billing-make-test.XXXXXX)
port=$(( 20000 + RANDOM % 20000 ))
password="make-test-$RANDOM$RANDOM"
localstripe_pid=""
cleanup() {
  [ -n "$localstripe_pid" ] && kill "$localstripe_pid" 2>/dev/null || true
  scripts/pg.sh stop "$base"
  rm -rf "$base"
}
trap cleanup EXIT

echo "== PostgreSQL on 127.0.0.1:$port ($base)"
scripts/pg.sh start "$base" "$port" "$password"
export BILLING_TEST_DATABASE_URL="postgres://postgres:$password@127.0.0.1:$port/postgres"

stripe_port=$(( port + 1 ))
echo "== localstripe on 127.0.0.1:$stripe_port"
.venv/bin/python scripts/localstripe_server.py "$stripe_port" >"$base/localstripe.log" 2>&1 &
localstripe_pid=$!
localstripe_ready=""
for _ in $(seq 1 300); do
  if curl -s -o /dev/null "http://127.0.0.1:$stripe_port/v1/customers" -u sk_test_x:; then localstripe_ready=1; break; fi
  sleep 0.1
done
if [ -z "$localstripe_ready" ]; then
  echo "localstripe did not answer on 127.0.0.1:$stripe_port within 30 s; its log:" >&2
  cat "$base/localstripe.log" >&2
  exit 1
fi
export BILLING_TEST_LOCALSTRIPE_URL="http://127.0.0.1:$stripe_port"
export BILLING_TEST_PYTHON="$PWD/.venv/bin/python"

echo "== test (the billing page's browser test saves its screenshots in test-artifacts/billing-page/)"
swift test --skip-build "$@"

# A short, seeded slice of `make fuzz` (scripts/fuzz.py starts its own database, stand-in and server). Only for the
# whole suite: `scripts/test.sh --filter NAME` stays quick. FUZZ_TEST_REQUESTS and FUZZ_SEED override.
if [ $# -eq 0 ]; then
  echo "== fuzz slice (make fuzz runs the whole campaign)"
  BILLINGD=.build/debug/billingd FUZZ_REQUESTS="${FUZZ_TEST_REQUESTS:-2500}" FUZZ_SEED="${FUZZ_SEED:-20261122}" \
    FUZZ_SCHEMATHESIS=0 .venv/bin/python scripts/fuzz.py
fi
