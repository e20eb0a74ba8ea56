#!/usr/bin/env bash
# make fuzz: the fuzzing campaign (not in CI). Builds billingd (debug) unless BILLINGD names a binary, makes the
# .venv (for schemathesis) as make test does, then runs scripts/fuzz.py, which starts its own PostgreSQL, Stripe
# stand-in and server and stops them at the end. Knobs: FUZZ_REQUESTS (100000), FUZZ_SEED, FUZZ_CONCURRENCY (8),
# FUZZ_SCHEMATHESIS (1), FUZZ_SCHEMATHESIS_EXAMPLES (25), ... (scripts/fuzz.py --help).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh postgres python

if [ "${FUZZ_SCHEMATHESIS:-1}" != "0" ] && [ -z "${SCHEMATHESIS:-}" ]; then
  if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import localstripe, stripe, openapi_spec_validator, schemathesis" 2>/dev/null; then
    echo "== python virtualenv (.venv): localstripe, stripe, openapi-spec-validator, schemathesis"
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-test.txt
  fi
fi

if [ -z "${BILLINGD:-}" ]; then
  echo "== build"
  swift build --product billingd
  export BILLINGD=.build/debug/billingd
fi

python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python
exec "$python" scripts/fuzz.py "$@"
