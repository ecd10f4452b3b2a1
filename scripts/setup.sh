#!/usr/bin/env bash
# Installs the system packages nulab-pass needs to build and test (Debian). Idempotent: does
# nothing when everything is present. Pass --test to include the test-only packages.
set -euo pipefail

packages=(pkg-config libssl-dev libclang-dev libxml2-dev libxmlsec1-dev xmlsec1)
if [[ "${1:-}" == "--test" ]]; then
  packages+=(postgresql chromium chromium-driver python3 python3-venv)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# An already-installed PostgreSQL server of any version will do.
if [[ " ${missing[*]} " == *" postgresql "* ]] && compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  missing=("${missing[@]/postgresql}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))

if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The browser tests inject axe-core (the npm package, pinned in tests/axe/package-lock.json).
axe_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/axe"
if [[ "${1:-}" == "--test" && ! -f "$axe_dir/node_modules/axe-core/axe.min.js" ]]; then
  if ! command -v npm >/dev/null 2>&1; then
    sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends npm >/dev/null
  fi
  (cd "$axe_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
