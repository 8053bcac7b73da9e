#!/usr/bin/env bash
# ferry's web app, Uppy on a page of another origin, and the web app while the server is
# killed and restarted, in a real browser: Debian's chromium driven by playwright-core (never a
# downloaded browser) against `ferry serve` with accounts, through a rate-limited proxy so
# a 200 MB upload is still running when the page reloads. Screenshots (desktop and phone
# width) go to target/browser-screenshots/.
# Needs node/npm and chromium (.ci/run installs them). Usage: run.sh [FERRY_BIN]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ferry="${1:-$here/../../target/debug/ferry}"
chromium="$(command -v chromium || true)"
[ -n "$chromium" ] || { echo "chromium is needed (apt-get install chromium)" >&2; exit 1; }
work="$(mktemp -d /var/tmp/ferry-browser.XXXXXX)"
server_pid=""
trap 'kill $server_pid 2>/dev/null || true; rm -rf "$work"' EXIT

mkdir -p "$work/data"
for u in alice bob; do
  echo "$u-pw" | "$ferry" user add "$u" --password-stdin --data "$work/data" 2>/dev/null
done
RUST_LOG="${FERRY_LOG:-info}" "$ferry" serve --listen 127.0.0.1:0 --data "$work/data" > "$work/banner" 2> "$work/server.log" &
server_pid=$!
for _ in $(seq 100); do grep -q http:// "$work/banner" 2>/dev/null && break; sleep 0.1; done
url="$(grep -o 'http://[0-9.:]*' "$work/banner" | head -1)"
echo "ferry at $url"

(cd "$here" && npm ci --no-audit --no-fund --silent)
shots="$here/../../target/browser-screenshots"
mkdir -p "$shots"
# Uppy bundled by esbuild into a page that uppy.mjs serves from another origin.
mkdir -p "$work/uppy-page"
(cd "$here" && npx --no-install esbuild uppy/entry.js --bundle --minify --log-level=warning --outdir="$work/uppy-page")
cp "$here/uppy/index.html" "$work/uppy-page/"
if ! { CHROMIUM="$chromium" SHOTS="$shots" node "$here/web_ui.mjs" "$url" "$work" &&
  CHROMIUM="$chromium" SHOTS="$shots" node "$here/uppy.mjs" "$url" "$work" "$work/uppy-page" &&
  CHROMIUM="$chromium" node "$here/server_restart.mjs" "$ferry" "$work"; }; then
  cp "$work/server.log" "$shots/server.log"
  cp "$work/restart-server.log" "$shots/" 2>/dev/null || true
  echo "--- server log (tail; whole in $shots/server.log) ---" >&2
  tail -20 "$work/server.log" >&2
  exit 1
fi
