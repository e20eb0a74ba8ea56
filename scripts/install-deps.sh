#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine with Swift, and nothing that is already there.
# Usage: scripts/install-deps.sh [postgres] [python] [browser] [wrk]
set -euo pipefail

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(postgres)

missing=()
for item in "${want[@]}"; do
  case "$item" in
    postgres)
      if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then missing+=(postgresql postgresql-client); fi
      if ! command -v psql >/dev/null 2>&1; then missing+=(postgresql-client); fi
      ;;
    python)
      command -v python3 >/dev/null 2>&1 || missing+=(python3)
      python3 -c "import venv, ensurepip" >/dev/null 2>&1 || missing+=(python3-venv)
      command -v curl >/dev/null 2>&1 || missing+=(curl)
      ;;
    browser)
      # Headless Chromium and its WebDriver, for the billing page's browser test; a font so screenshots have text.
      command -v chromium >/dev/null 2>&1 || missing+=(chromium)
      [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
      ls /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf >/dev/null 2>&1 || missing+=(fonts-dejavu-core)
      ;;
    wrk)
      command -v wrk >/dev/null 2>&1 || missing+=(wrk)
      command -v pgbench >/dev/null 2>&1 || missing+=(postgresql-contrib)
      ;;
    *) echo "unknown dependency: $item" >&2; exit 2 ;;
  esac
done

if ! command -v swift >/dev/null 2>&1; then
  echo "swift is not on PATH: install the Swift 6 toolchain first (https://swift.org/install)" >&2
  exit 1
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's package starts a cluster of its own; ours run in folders of the project.
  $SUDO service postgresql stop >/dev/null 2>&1 || true
fi
