#!/usr/bin/env bash
# What busy PostgreSQL backends wait on: samples pg_stat_activity every 50 ms and counts each
# (wait event, statement) pair. Run it beside `scripts/acs_load.sh --postgres` once the
# sign-ins have started. Usage: bash scripts/pg_waits.sh [samples, default 400] [port, default
# NULAB_PASS_TEST_PG_PORT or 55432]
set -euo pipefail
samples=${1:-400}
port=${2:-${NULAB_PASS_TEST_PG_PORT:-55432}}
for _ in $(seq "$samples"); do
  psql -h 127.0.0.1 -p "$port" -U postgres -At postgres -c \
    "SELECT coalesce(wait_event_type, 'running') || ':' || coalesce(wait_event, '-') || ' | ' ||
            left(regexp_replace(query, '\s+', ' ', 'g'), 70)
       FROM pg_stat_activity
      WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()" || true
  sleep 0.05
done | sort | uniq -c | sort -rn
