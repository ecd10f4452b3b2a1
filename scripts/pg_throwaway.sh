# Sourced by the scripts that need PostgreSQL: starts a throwaway cluster on loopback port
# NULAB_PASS_TEST_PG_PORT (default 55432), and stops and removes it when the script exits. By
# default with a deployment's durability settings (fsync and synchronous commit on), as the load
# scripts measure; a script sets `pg_settings` (more `-c` options) and `pg_stop` (pg_ctl's stop
# mode) before sourcing to change that. Sets pg_bin, pg_port, pg_url and pg_pid (the
# postmaster's).
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
pg_dir=$(mktemp -d /tmp/nulab-pass-pg.XXXXXX)
pg_port=${NULAB_PASS_TEST_PG_PORT:-55432}
chown postgres "$pg_dir" 2>/dev/null || true
as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
stop_pg() {
  as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m "${pg_stop:-fast}" stop >/dev/null 2>&1 || true
  rm -rf "$pg_dir"
}
trap stop_pg EXIT
as_pg "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth=trust -E UTF8 >/dev/null
as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w start -o "-p $pg_port -k $pg_dir \
  -c listen_addresses=127.0.0.1 ${pg_settings:--c max_connections=100}" >/dev/null
pg_url="postgres://postgres@127.0.0.1:$pg_port/postgres"
pg_pid=$(head -n 1 "$pg_dir/data/postmaster.pid")
