#!/usr/bin/env bash
# Property-based testing of the admin API against its own OpenAPI document with schemathesis
# (PyPI): generated requests for every operation, with an organization's full-scope token, must
# never get a 5xx, and every answer must match the document's status codes and content types.
# Usage: bash scripts/schemathesis.sh [max examples per operation, default 100]
# Needs python3 with venv; builds the server, runs it on SQLite in a temporary folder, and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-100}
venv=${SCHEMATHESIS_VENV:-/tmp/nulab-pass-schemathesis}
[[ -x "$venv/bin/schemathesis" ]] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q schemathesis; }
cargo build --locked --bin nulab-pass
bin=${CARGO_TARGET_DIR:-target}/debug/nulab-pass
work=$(mktemp -d /tmp/nulab-pass-schemathesis.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export NULAB_PASS_DATABASE_URL="sqlite://$work/st.db" NULAB_PASS_CERTS_DIR="$work/certs" \
  NULAB_PASS_BIND="127.0.0.1:$port" RUST_LOG=warn
printf '%s' 'correct horse battery' | "$bin" account create --email ada@st.test --name Ada --password-stdin >/dev/null
"$bin" org create --slug acme --name "Acme" --admin-email ada@st.test >/dev/null
"$bin" org seats --org acme --seats 1000 >/dev/null
token=$("$bin" token create --org acme --scopes read,members,domains,sso,billing,audit)
"$bin" serve 2>"$work/server.log" &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
# Every operation names the organization the token belongs to, so that the generated requests
# reach the handlers rather than stopping at the token check (which the coverage phase still
# meets: it also sends requests without the header).
printf '[parameters]\n"path.org" = "acme"\n' >"$work/schemathesis.toml"
status=0
"$venv/bin/schemathesis" --config-file "$work/schemathesis.toml" run "http://127.0.0.1:$port/api/v1/openapi.json" \
  --url "http://127.0.0.1:$port" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance \
  --max-examples "$examples" --seed 1 --no-color || status=$?
if grep -q "error id" "$work/server.log"; then
  echo "the server logged internal errors:"; grep "error id" "$work/server.log" | head -20; status=1
fi
exit $status
