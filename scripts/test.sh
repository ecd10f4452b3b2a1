#!/usr/bin/env bash
# The second command: sets up what is missing, starts a throwaway PostgreSQL on loopback, and
# runs the whole test suite (every store and HTTP test runs on SQLite and on PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test

# The test suite's cluster needs no durability, and many connections (tests run in parallel).
pg_settings="-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400"
pg_stop=immediate
source scripts/pg_throwaway.sh
export NULAB_PASS_TEST_POSTGRES_URL="$pg_url"

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast "$@"
else
  cargo test --locked --no-fail-fast "$@"
fi

# The whole suite also runs schemathesis against the API's OpenAPI document (a short run: 20
# generated requests per operation; scripts/schemathesis.sh takes more for a long one).
if (($# == 0)); then
  bash scripts/schemathesis.sh "${NULAB_PASS_SCHEMATHESIS_EXAMPLES:-20}"
fi
