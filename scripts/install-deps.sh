#!/usr/bin/env bash
# Installs what the machine lacks, Debian/Ubuntu only (elsewhere it says
# what to install):
#   scripts/install-deps.sh             PostgreSQL server binaries and redis-server:
#                                       what `cargo run` and `cargo test` need
#   scripts/install-deps.sh --browser   also Debian's Chromium, for the playground's browser test
#   scripts/install-deps.sh --examples  also Node.js and npm, the npm packages of examples/, and
#                                       those of tests/node (the client libraries the tests run)
# `.ci/run` asks for all of it; the tests run it themselves when they miss something.
set -euo pipefail
cd "$(dirname "$0")/.."

browser=false
examples=false
for arg in "$@"; do
  case "$arg" in
    --browser) browser=true ;;
    --examples) examples=true ;;
    *) echo "install-deps: unknown option $arg" >&2; exit 2 ;;
  esac
done

have_postgres() {
  command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && return 0
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}
have_redis() { command -v redis-server >/dev/null 2>&1; }
have_chromium() { [ -x /usr/bin/chromium ] || [ -x /usr/bin/chromium-browser ]; }
have_node() { command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; }

missing=()
have_postgres || missing+=(postgresql)
have_redis || missing+=(redis-server)
if $browser; then have_chromium || missing+=(chromium); fi
if $examples; then have_node || missing+=(nodejs npm); fi

if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: please install: ${missing[*]}" >&2
    exit 1
  fi
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "install-deps: installing ${missing[*]}" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The example client's packages and the test clients', exactly as locked,
# when they are not there yet or the lock changed since they were installed.
for dir in examples tests/node; do
  if $examples && { [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; }; then
    echo "install-deps: installing the npm packages of $dir/" >&2
    (cd "$dir" && npm ci --no-audit --no-fund)
  fi
done
