#!/usr/bin/env bash
# A throwaway PostgreSQL in a folder: scripts/pg.sh start DIR PORT PASSWORD | scripts/pg.sh stop DIR
# initdb and postgres refuse root, so as root they run as the postgres OS user.
set -euo pipefail

PGBIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
cmd=$1 dir=$2

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
  start)
    port=$3 password=$4
    mkdir -p "$dir/sock"
    printf '%s' "$password" > "$dir/pwfile"
    [ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$dir"
    chmod 755 "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_postgres "$PGBIN/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
    fi
    rm -f "$dir/pwfile"
    # Throwaway clusters only: durability off for speed.
    as_postgres "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir/sock -c listen_addresses=127.0.0.1 -c max_connections=500 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >/dev/null
    ;;
  stop)
    as_postgres "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    ;;
  *) echo "usage: $0 start DIR PORT PASSWORD | stop DIR" >&2; exit 2 ;;
esac
